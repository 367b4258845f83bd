"""What runs: the stack's managed containers as plain data (the `Actual` side of the plan).

The Docker adapter parses the engine's container list and our labels into these; the
offline plan of a pull request builds them from the base commit's Desired state, as if it
had been applied (`controller.plan.actual_from`). Pure: no Docker here, and nothing from
the layers above (ARCHITECTURE.md: observed imports only errors).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Labels on every container the controller creates (ARCHITECTURE.md "Ownership").
LABEL = "llm-gitops"
MANAGED_BY = f"{LABEL}.managed-by"
STACK = f"{LABEL}.stack"
COMPONENT = f"{LABEL}.component"
PROVIDER = f"{LABEL}.provider"
SPEC_HASH = f"{LABEL}.spec-hash"
REVISION = f"{LABEL}.revision"
NAME = f"{LABEL}.name"      # the name it was created with; differs once apply renamed it aside
SPEC = f"{LABEL}.spec"      # the ContainerSpec as JSON (names of secrets, never their values)
PASS = f"{LABEL}.pass"      # the pass that created it
OWNER = f"{LABEL}.owner"    # the id of the state dir whose controller created it: one state dir per stack
STATE_DIR = f"{LABEL}.state-dir"  # that state dir's path, for messages
MANAGED_BY_US = "llm-gitops"

# A replaced container is kept, stopped, under `<name><ASIDE><id12>` until its pass succeeds,
# so that going back is a rename and a start, not a re-create.
ASIDE = "--llm-gitops-old-"


@dataclass(frozen=True)
class ObservedContainer:
    name: str
    key: str                       # provider name, or "gateway" / "cache"
    component: str                 # provider | gateway | cache
    spec_hash: str
    running: bool = True
    gpus: str | tuple[str, ...] | None = None   # what it holds: "all", device ids, or nothing
    port: int | None = None                     # the host port it listens on (host networking)
    spec: Mapping[str, Any] | None = None       # the spec it was created from, as plain data, when known
    id: str = ""                                # engine id; empty in an offline plan
    revision: str | None = None                 # commit that created it
    original_name: str | None = None            # the name it was created with (label), if it was renamed aside
    state: str = "running"                      # the engine's word: created, running, exited, restarting...
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def aside(self) -> bool:
        """Renamed aside by an apply (kept for going back, or left by an interrupted pass)."""
        return self.original_name is not None and self.original_name != self.name


@dataclass(frozen=True)
class Observation:
    """One look at the engine: our stack's containers, and the names and ports of the
    desired containers that others hold: containers without our labels, of another stack,
    or of this stack but created from another state dir (conflicts, never touched)."""

    containers: tuple[ObservedContainer, ...]
    foreign: Mapping[str, str] = field(default_factory=dict)   # wanted name -> who holds it (id, owner)
    # ports held by running containers of this stack that another state dir's controller owns
    foreign_ports: Mapping[int, str] = field(default_factory=dict)
