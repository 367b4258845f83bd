"""What runs: the stack's managed containers as plain data (the `Actual` side of the plan).

The Docker adapter parses `docker inspect` output into these; the offline plan of a pull
request builds them from the base commit's Desired state, as if it had been applied.
Pure: no Docker here.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.render import ContainerSpec, Desired


@dataclass(frozen=True)
class ObservedContainer:
    name: str
    key: str                       # provider name, or "gateway" / "cache"
    component: str
    spec_hash: str
    running: bool = True
    spec: ContainerSpec | None = None  # the spec it was created from, when known (explains diffs)


def from_desired(desired: Desired | None) -> tuple[ObservedContainer, ...]:
    """The containers a commit's Desired state would leave running: the base of an offline plan."""
    if desired is None:
        return ()
    return tuple(ObservedContainer(name=c.name, key=c.key, component=c.component,
                                   spec_hash=c.spec_hash, spec=c) for c in desired.containers)
