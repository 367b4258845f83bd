"""Desired + Actual -> Plan: ordered steps, each with the file and field that caused it.

The last pure stage before `apply`. `plan(desired, actual)` decides per container:
create, recreate (spec hash differs), start (stopped but matching), remove (no longer
wanted) or unchanged, and orders the steps as ARCHITECTURE.md says: first what frees a GPU
or a port that another container needs, then the cache, providers, the gateway, orphans
last. What a pull-request reviewer needs besides (config diff, model changes, impact) is
added by `controller.review`. Pure: no Docker, no git, no clock.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.errors import Fault, Problem
from controller.observed import ObservedContainer
from controller.render import ContainerSpec, Desired
from controller.render.containers import NOT_HASHED
from controller.spec.load import MAPPINGS, PROVIDERS, STACK, is_informational, subject_of


class Action(str, enum.Enum):
    CREATE = "create"
    RECREATE = "recreate"
    START = "start"
    RESTART = "restart"      # same container, restarted (the gateway, when its live config file drifted)
    REMOVE = "remove"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Step:
    action: Action
    key: str             # provider name, "gateway" or "cache"
    name: str            # container name
    component: str
    reasons: tuple[str, ...] = ()
    desired: ContainerSpec | None = None
    actual: ObservedContainer | None = None
    # Its old container holds a GPU or port that a new one needs: apply stops every such
    # container before it starts anything (two containers may swap ports or GPUs).
    stops_first: bool = False
    # A container an earlier apply set aside (stopped, renamed) with exactly the desired spec:
    # renamed back and started instead of created. This is how going back avoids a re-create.
    reuse: ObservedContainer | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "container": self.name, "component": self.component,
                "key": self.key, "reasons": list(self.reasons), "stops_first": self.stops_first,
                "spec_hash": self.desired.spec_hash if self.desired else None}


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    config_diff: str = ""
    models_added: tuple[str, ...] = ()
    models_removed: tuple[str, ...] = ()
    models_rerouted: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (old, new)
    warnings: tuple[Problem, ...] = ()   # warnings this change brings
    known_warnings: int = 0              # warnings the base had already (not repeated)
    notes: tuple[str, ...] = ()
    preface: tuple[str, ...] = ()        # what the reader must know first (e.g. the base was invalid)

    @property
    def changes(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.action is not Action.UNCHANGED)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes or self.config_diff)

    def leaving_alone(self, names: frozenset[str] | set[str]) -> Plan:
        """This plan with every step on the containers `names` dropped (the loop's flap
        limit: a container that keeps dying is left as it is, not started again and again).
        A step that would only bring one back is dropped; one that replaces it too."""
        if not names:
            return self
        return dataclasses.replace(self, steps=tuple(s for s in self.steps if s.name not in names))

    def as_dict(self) -> dict[str, Any]:
        return {
            "changes": self.has_changes,
            "steps": [s.as_dict() for s in self.steps],
            "models": {"added": list(self.models_added), "removed": list(self.models_removed),
                       "rerouted": {k: {"from": a, "to": b} for k, (a, b) in self.models_rerouted.items()}},
            "config_diff": self.config_diff,
            "warnings": [w.as_dict() for w in self.warnings],
            "known_warnings": self.known_warnings,
            "notes": list(self.notes),
            "preface": list(self.preface),
        }


def actual_from(desired: Desired | None) -> tuple[ObservedContainer, ...]:
    """The containers a commit's Desired state leaves running: the base of an offline plan."""
    if desired is None:
        return ()
    return tuple(ObservedContainer(name=c.name, key=c.key, component=c.component, spec_hash=c.spec_hash,
                                   gpus=c.gpus, port=c.port, spec=c.model_dump(mode="json"))
                 for c in desired.containers)


# --------------------------------------------------------------------------- why: source changes


SourceChange = tuple[str, tuple[Any, ...]]  # (file, loc) of a key whose value differs


def spec_changes(base: Mapping[str, Any], head: Mapping[str, Any]) -> list[SourceChange]:
    """Every leaf (or list, or added/removed key) whose value differs between two commits'
    raw spec data, informational keys left out: these are the reasons a plan can give."""
    out: list[SourceChange] = []
    for file in sorted(set(base) | set(head)):
        for loc in _diff(base.get(file), head.get(file), ()):
            if not is_informational(file, loc):
                out.append((file, loc))
    return out


def _diff(a: Any, b: Any, loc: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                yield (*loc, key)
            else:
                yield from _diff(a[key], b[key], (*loc, key))
    elif (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
          and all(isinstance(x, dict) for x in a + b)):
        # lists of mappings (models, load-balancing targets): item by item, so that an
        # informational key inside an item is recognised as such; lists of values (args) whole
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _diff(x, y, (*loc, i))
    elif a != b:
        yield loc


_GATEWAY_PROVIDER_KEYS = {"type", "status", "base_url", "models", "env_var", "api_key"}


# Keys that only the controller reads (render leaves them out of the spec hash): never a
# reason to restart. (`container.host` is: a move stops it on one host, starts it on another.)
_CONTROLLER_ONLY = {("container", "startup_timeout_s"), ("health_endpoint",), ("startup_timeout_s",)}


def _feeds(spec: ContainerSpec, change: SourceChange) -> bool:
    """Whether a changed key is an input of a container (can be a reason to restart it)."""
    file, loc = change
    if loc == ("name",) and file == STACK:
        return True
    if (file == PROVIDERS and tuple(loc[2:]) in _CONTROLLER_ONLY
            or file == STACK and tuple(loc[1:]) in _CONTROLLER_ONLY):
        return False
    if spec.component == "provider":
        return file == PROVIDERS and loc[:2] == ("providers", spec.provider)
    if spec.component == "cache":
        return file == STACK and loc[:1] == ("cache",)
    if file == PROVIDERS:  # the gateway reads a provider's routing keys, not its container block
        return len(loc) < 3 and loc[:1] == ("providers",) or (len(loc) >= 3 and loc[2] in _GATEWAY_PROVIDER_KEYS)
    return file == MAPPINGS or file == STACK and loc[:1] in (("gateway",), ("cache",))


def _describe(change: SourceChange) -> str:
    file, loc = change
    return f"{file}: {subject_of(file, loc)}"


def _field_reasons(old: Mapping[str, Any], new: ContainerSpec) -> list[str]:
    now = new.model_dump(mode="json")
    names = [k for k in now if k not in NOT_HASHED and old.get(k) != now[k]]
    if names == ["config_digest"]:
        return ["rendered LiteLLM config changed"]
    return [f"rendered {k} changed" for k in names] or ["a secret it receives changed"]


def _recreate_reasons(desired: ContainerSpec, actual: ObservedContainer,
                      changes: Sequence[SourceChange]) -> tuple[str, ...]:
    found = [_describe(c) for c in changes if _feeds(desired, c)]
    if actual.spec is not None and _moves(actual, desired):
        where = actual.spec.get("placement") or "every host"
        found.append(f"moves from {where} to {desired.placement or 'every host'}")
    if found:
        return tuple(dict.fromkeys(found))
    if actual.spec is not None:
        return tuple(_field_reasons(actual.spec, desired))
    return ("spec hash differs from the running container's",)


def _create_reason(spec: ContainerSpec, changes: Sequence[SourceChange]) -> str:
    """The most telling change behind a new container: the stack's rename, the provider's
    activation or arrival, then anything else that feeds it."""
    feeding = [c for c in changes if _feeds(spec, c)]
    if spec.component != "provider":
        rename = (STACK, ("name",)) in feeding
        return "new: " + (f"{STACK}: name" if rename else f"{STACK}: {spec.component}")
    feeding.sort(key=lambda c: (c[1][2:] != ("status",), len(c[1])))
    return "new: " + _describe(feeding[0] if feeding else (PROVIDERS, ("providers", spec.key)))


# --------------------------------------------------------------------------- the plan


def _devices(gpus: str | Sequence[str] | None) -> set[str]:
    return set() if gpus is None else {"*"} if gpus == "all" else set(gpus)


@dataclass(frozen=True)
class _Wanted:
    """Who in the desired state wants which port and GPU: built once per plan."""

    ports: dict[int, set[str]]
    gpus: dict[str, set[str]]  # device id (or "*" for all) -> container names

    @classmethod
    def of(cls, desired: Desired) -> _Wanted:
        ports: dict[int, set[str]] = {}
        gpus: dict[str, set[str]] = {}
        for c in desired.containers:
            ports.setdefault(c.port, set()).add(c.name)
            for d in _devices(c.gpus):
                gpus.setdefault(d, set()).add(c.name)
        return cls(ports, gpus)

    def by_others(self, name: str, port: int | None, devices: set[str]) -> bool:
        """Whether a container other than `name` wants `port` or one of `devices`."""
        if port is not None and self.ports.get(port, set()) - {name}:
            return True
        asked = {d for d, users in self.gpus.items() if users - {name}}
        return bool(devices and asked and (devices & asked or "*" in devices or "*" in asked))


def _frees(step: Step, wanted: _Wanted) -> bool:
    """Whether stopping this step's old container frees a GPU or port another container wants."""
    old = step.actual
    if old is None or step.action not in (Action.REMOVE, Action.RECREATE):
        return False
    held = _devices(old.gpus)
    return wanted.by_others(step.name, old.port, held) or (step.action is Action.REMOVE and bool(held))


def _phase(step: Step) -> int:
    """Order of ARCHITECTURE.md: cache, providers, gateway, orphans. (What frees a GPU or a
    port is stopped before all of them, whatever its place here: apply stops every
    `stops_first` step first, then goes through the steps in this order.)"""
    if step.action is Action.REMOVE:
        return 4
    return {"cache": 1, "provider": 2, "gateway": 3}.get(step.component, 2)


def plan(desired: Desired, actual: Sequence[ObservedContainer], *,
         changes: Sequence[SourceChange] = (), live_config_digest: str | None = None) -> Plan:
    """What to do so that `actual` becomes `desired`, and why.

    Containers are matched by name (`<stack>-<provider>`), so renaming the stack removes the
    old containers and creates new ones. `changes` (from `spec_changes`) explain each step by
    file and field; without them (live state only) the reasons are the rendered fields.
    Containers set aside by an earlier apply are brought back when they match exactly and
    removed otherwise. `live_config_digest`: the sha256 of the gateway's config file on disk,
    when known; a file edited by hand restarts the gateway after the file is put back.
    """
    actual = list({(a.id or a.name): a for a in actual}.values())  # each container once, whoever listed it
    by_name = {a.name: a for a in actual if not a.aside}
    aside: dict[str, list[ObservedContainer]] = {}
    for a in actual:
        if a.aside:
            aside.setdefault(a.original_name or a.name, []).append(a)
    steps: list[Step] = []
    for spec in desired.containers:
        have = by_name.pop(spec.name, None)
        if have is None or have.spec_hash != spec.spec_hash or _moves(have, spec):
            reuse = _reusable(aside.get(spec.name, []), spec)
            if reuse is not None:
                aside[spec.name].remove(reuse)
            if have is None:
                why = (_create_reason(spec, changes),)
                steps.append(Step(Action.CREATE, spec.key, spec.name, spec.component, _kept(why, reuse), spec, None,
                                  reuse=reuse))
            else:
                why = _recreate_reasons(spec, have, changes)
                steps.append(Step(Action.RECREATE, spec.key, spec.name, spec.component, _kept(why, reuse), spec,
                                  have, reuse=reuse))
        elif not have.running:
            steps.append(Step(Action.START, spec.key, spec.name, spec.component,
                              ("stopped, spec unchanged",), spec, have))
        elif (spec.component == "gateway" and live_config_digest is not None
              and live_config_digest != desired.config_digest):
            why = ("the live config file is missing: it is written again and the gateway restarted"
                   if live_config_digest == "" else
                   "the live config file differs from the commit's (edited by hand?): "
                   "it is put back and the gateway restarted")
            steps.append(Step(Action.RESTART, spec.key, spec.name, spec.component, (why,), spec, have))
        else:
            steps.append(Step(Action.UNCHANGED, spec.key, spec.name, spec.component, (), spec, have))
    for have in by_name.values():
        if have.component == "canary":  # never a stack member: a pass was killed while its canary ran
            steps.append(Step(Action.REMOVE, have.key, have.name, have.component,
                              ("a gateway canary left by an interrupted pass",), None, have))
            continue
        why = [_describe(c) for c in changes if c[0] == PROVIDERS and c[1][:2] == ("providers", have.key)
               or c[0] == STACK and (c[1] == ("name",) or c[1][:1] == (have.component,))]
        steps.append(Step(Action.REMOVE, have.key, have.name, have.component,
                          tuple(why) or ("no longer in the spec",), None, have))
    for left in (a for group in aside.values() for a in group):
        steps.append(Step(Action.REMOVE, left.key, left.name, left.component,
                          (f"set aside by an earlier pass for {left.original_name}, no longer needed",), None, left))
    wanted = _Wanted.of(desired)
    steps = [dataclasses.replace(s, stops_first=_frees(s, wanted)) for s in steps]
    steps.sort(key=lambda s: (s.action is Action.UNCHANGED, _phase(s), s.key, s.name))
    return Plan(steps=tuple(steps))


def _reusable(candidates: Sequence[ObservedContainer], spec: ContainerSpec) -> ObservedContainer | None:
    for c in candidates:
        if c.spec_hash == spec.spec_hash and not _moves(c, spec):
            return c
    return None


def _kept(reasons: tuple[str, ...], reuse: ObservedContainer | None) -> tuple[str, ...]:
    if reuse is None:
        return reasons
    return (*reasons, f"brings back the stopped container {reuse.name} (same spec): a start, not a create")


def conflicts(desired: Desired, plan_: Plan, foreign: Mapping[str, str], busy_ports: Sequence[int],
              foreign_ports: Mapping[int, str] | None = None) -> list[Fault]:
    """What stops a plan before it stops anything: a desired container name taken by a
    container without our labels, and a port that a process or container the controller
    does not own listens on. `busy_ports` are the ports found taken after discounting our
    own running containers (the adapter probes them)."""
    out: list[Fault] = []
    for step in plan_.changes:
        if step.desired is not None and step.name in foreign:
            out.append(Fault(
                f"container {step.name}",
                f"a container named {step.name} exists that this stack does not own ({foreign[step.name]}); "
                "llm-gitops never touches containers it does not own",
                f"rename or remove it yourself (docker rm -f {step.name}) if it is yours to remove, "
                "or rename the stack in stack.yaml" if "another state dir" not in foreign[step.name] else
                "one state dir per stack: run llm-gitops with that --state-dir, or if it is gone, remove its "
                f"containers (docker rm -f {step.name} ...) and apply again"))
    for port in sorted(set(busy_ports)):
        users = sorted(c.name for c in desired.containers if c.port == port)
        holder = (foreign_ports or {}).get(port)
        if holder is not None:
            out.append(Fault(
                f"port {port}", f"port {port}, wanted by {', '.join(users)}, is held by {holder}",
                "one state dir per stack: run llm-gitops with that --state-dir, or if it is gone, remove its "
                "containers (docker rm -f) and apply again"))
            continue
        out.append(Fault(
            f"port {port}",
            f"port {port}, wanted by {', '.join(users)}, is held by a process or container llm-gitops does not manage",
            f"find it with: ss -ltnp 'sport = :{port}'; stop it, or move {', '.join(users)} to another port"))
    return out


def _moves(have: ObservedContainer, spec: ContainerSpec) -> bool:
    """Placed on another host: it stops on one and cold-starts on the other, though the
    spec hash (which leaves placement out) is the same."""
    return have.spec is not None and have.spec.get("placement") != spec.placement


def ports_to_probe(plan_: Plan, actual: Sequence[ObservedContainer]) -> list[tuple[str, int]]:
    """(host, port) pairs that this plan starts something on and that none of our own
    running containers holds: if one is taken, it is taken by someone else. Pure; the
    adapter probes them before the plan stops anything."""
    ours = {a.port for a in actual if a.running and a.port is not None}
    out: dict[int, str] = {}
    for step in plan_.changes:
        spec = step.desired
        if spec is None or step.action is Action.RESTART or spec.port in ours:
            continue
        out[spec.port] = spec.listen_host
    return sorted((host, port) for port, host in out.items())
