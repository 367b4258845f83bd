"""What runs: the stack's managed containers as plain data (the `Actual` side of the plan).

The Docker adapter will parse `docker inspect` output and our labels into these; the
offline plan of a pull request builds them from the base commit's Desired state, as if it
had been applied (`controller.plan.actual_from`). Pure: no Docker here, and nothing from
the layers above (ARCHITECTURE.md: observed imports only errors).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


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
