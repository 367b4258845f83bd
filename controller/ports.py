"""The interfaces the acting core needs from the world, as `Protocol`s.

`apply` and `reconcile` are written against these; `controller.adapters` implements them on
the Docker engine, HTTP/Redis probes and a state directory (ARCHITECTURE.md layers:
ports imports observed and plan only). Tests may pass fakes for logic in isolation; every
behaviour the README promises is also tested on the real adapters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from controller.observed import Observation
from controller.record import Record
from controller.render import Desired
from controller.render.containers import ContainerSpec, Health


@dataclass(frozen=True)
class ContainerState:
    """One inspect of a container, as much as a health gate and `status` need."""

    id: str
    name: str
    status: str              # created | running | restarting | exited | dead | paused | missing
    running: bool
    exit_code: int | None = None
    restart_count: int = 0
    started_at: str = ""     # RFC 3339 from the engine
    finished_at: str = ""
    error: str = ""          # the engine's own error (e.g. a failed device request)


class Runtime(Protocol):
    """The container engine, narrowed to what a pass does. Every method raises
    `EngineError` (naming the container) and nothing else."""

    def observe(self, stack: str, names: Iterable[str] = ()) -> Observation: ...
    def missing_images(self, images: Iterable[str]) -> list[str]: ...
    def create(self, spec: ContainerSpec, *, stack: str, revision: str, pass_id: str) -> str: ...
    def start(self, container_id: str) -> None: ...
    def keep_running(self, container_id: str) -> None: ...   # restart policy unless-stopped, once healthy
    def stop(self, container_id: str, *, timeout_s: int | None = None) -> None: ...
    def rename(self, container_id: str, name: str) -> None: ...
    def remove(self, container_id: str) -> None: ...
    def state(self, container_id: str) -> ContainerState: ...
    def logs(self, container_id: str, tail: int = 20) -> str: ...


class Prober(Protocol):
    """Health endpoints and listening ports, probed from the controller's host."""

    def healthy(self, health: Health) -> tuple[bool, str]: ...
    def port_taken(self, host: str, port: int) -> bool: ...
    def free_port(self, host: str) -> int: ...   # one nothing listens on now (for a canary)
    # the names a gateway at base_url lists on /v1/models, asked with the master key read from
    # the variable key_env (the value never leaves the adapter); None and what was seen when
    # there is no list (refused, HTTP 401, not JSON)
    def served_models(self, base_url: str, key_env: str | None) -> tuple[list[str] | None, str]: ...


class GatewayConfig(Protocol):
    """The directory the gateway mounts: stage a file, check it, swap it in atomically."""

    def live_digest(self) -> str: ...           # sha256 of the live file, "" when there is none
    def stage(self, text: str) -> None: ...
    def check_staged(self, expected: Mapping[str, Any], digest: str) -> None: ...
    def swap(self) -> None: ...
    def discard_staged(self) -> None: ...       # the pass ends without swapping: no staged file is left behind
    def keep_live_copy(self) -> str: ...        # before replacing a hand-edited live file: where ("" if not edited)


class StateStore(Protocol):
    """The state directory: the revision record and the history of passes. Every write is
    atomic (temp file, fsync, rename) or an fsynced append, so a crash leaves it readable."""

    def record(self) -> Record: ...
    def save(self, record: Record) -> None: ...
    def append_history(self, entry: Mapping[str, Any]) -> None: ...
    def history(self) -> list[dict[str, Any]]: ...
    def save_snapshot(self, commit: str, desired: Desired) -> None: ...   # what the applied commit runs
    def snapshot(self, commit: str | None = None) -> Desired | None: ...  # None: not that commit's, or damaged
    def snapshot_of(self, commit: str | None = None) -> tuple[str | None, Desired | None]: ...
