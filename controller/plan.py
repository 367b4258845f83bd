"""Desired + Actual -> Plan: ordered steps, each with the file and field that caused it.

The last pure stage before `apply`. `plan(desired, actual)` decides per container:
create, recreate (spec hash differs), start (stopped but matching), remove (no longer
wanted) or unchanged, and orders the steps as ARCHITECTURE.md says: free GPUs first, then
the cache, providers, the gateway, orphans last. A Plan also carries what reviewers of a
pull request need: the diff of the rendered LiteLLM config, public models added, removed
and re-routed, warnings, and impact notes. Pure: no Docker, no git, no clock.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.errors import Problem
from controller.observed import ObservedContainer
from controller.render import ContainerSpec, Desired
from controller.spec.load import MAPPINGS, PROVIDERS, STACK, is_informational, subject_of


class Action(str, enum.Enum):
    CREATE = "create"
    RECREATE = "recreate"
    START = "start"
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

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "container": self.name, "component": self.component,
                "key": self.key, "reasons": list(self.reasons),
                "spec_hash": self.desired.spec_hash if self.desired else None}


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    config_diff: str = ""
    models_added: tuple[str, ...] = ()
    models_removed: tuple[str, ...] = ()
    models_rerouted: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (old, new)
    warnings: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()
    preface: tuple[str, ...] = ()  # what the reader must know first (e.g. the base was invalid)

    @property
    def changes(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.action is not Action.UNCHANGED)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes or self.config_diff)

    def as_dict(self) -> dict[str, Any]:
        return {
            "changes": self.has_changes,
            "steps": [s.as_dict() for s in self.steps],
            "models": {"added": list(self.models_added), "removed": list(self.models_removed),
                       "rerouted": {k: {"from": a, "to": b} for k, (a, b) in self.models_rerouted.items()}},
            "config_diff": self.config_diff,
            "warnings": [w.as_dict() for w in self.warnings],
            "notes": list(self.notes),
            "preface": list(self.preface),
        }


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
    elif a != b:
        yield loc


def _inputs(spec: ContainerSpec) -> list[SourceChange]:
    """The spec prefixes that feed a container (what can be a reason to restart it)."""
    common: list[SourceChange] = [(STACK, ("name",))]
    if spec.component == "provider":
        return [*common, (PROVIDERS, ("providers", spec.provider))]
    if spec.component == "cache":
        return [*common, (STACK, ("cache",))]
    return [*common, (STACK, ("gateway",)), (STACK, ("cache",)), (MAPPINGS, ())]


_GATEWAY_PROVIDER_KEYS = {"type", "status", "base_url", "models", "env_var", "api_key"}


def _feeds(spec: ContainerSpec, change: SourceChange) -> bool:
    file, loc = change
    if spec.component == "gateway" and file == PROVIDERS:
        # what the LiteLLM config reads of a provider; its container block is not among it
        return len(loc) < 3 and loc[:1] == ("providers",) or (len(loc) >= 3 and loc[2] in _GATEWAY_PROVIDER_KEYS)
    return any(file == f and loc[:len(prefix)] == prefix for f, prefix in _inputs(spec))


def _describe(change: SourceChange) -> str:
    file, loc = change
    return f"{file}: {subject_of(file, loc)}"


def _field_reasons(old: ContainerSpec, new: ContainerSpec) -> list[str]:
    a, b = old.model_dump(exclude={"spec_hash"}), new.model_dump(exclude={"spec_hash"})
    names = [k for k in a if a[k] != b[k]]
    if names == ["config_digest"]:
        return ["rendered LiteLLM config changed"]
    return [f"rendered {k} changed" for k in names] or ["a secret it receives changed"]


def _recreate_reasons(desired: ContainerSpec, actual: ObservedContainer,
                      changes: Sequence[SourceChange]) -> tuple[str, ...]:
    found = [_describe(c) for c in changes if _feeds(desired, c)]
    if desired.component == "gateway" and actual.spec is not None and actual.spec.config_digest != desired.config_digest:
        found = found or ["rendered LiteLLM config changed"]
    if found:
        return tuple(dict.fromkeys(found))
    if actual.spec is not None:
        return tuple(_field_reasons(actual.spec, desired))
    return ("spec hash differs from the running container's",)


# --------------------------------------------------------------------------- the plan


def _phase(step: Step, wanted_ports: set[int]) -> int:
    """Order of ARCHITECTURE.md: free GPUs (and ports a new container needs), cache,
    providers, gateway, orphans."""
    old = step.actual.spec if step.actual is not None else None
    if step.action is Action.REMOVE:
        frees = old is not None and (old.gpus is not None or old.port in wanted_ports)
        return 0 if frees else 4
    return {"cache": 1, "provider": 2, "gateway": 3}.get(step.component, 2)


def plan(desired: Desired, actual: Sequence[ObservedContainer], *,
         changes: Sequence[SourceChange] = (), base: Desired | None = None,
         warnings: Sequence[Problem] = ()) -> Plan:
    """What to do so that `actual` becomes `desired`, and why.

    Containers are matched by name (`<stack>-<provider>`), so renaming the stack removes the
    old containers and creates new ones. `changes` (from `spec_changes`) explain each step by
    file and field; `base` (the Desired of the commit that `actual` came from, when known)
    adds the config diff, the public model changes and the impact notes.
    """
    by_name = {a.name: a for a in actual}
    steps: list[Step] = []
    for spec in desired.containers:
        have = by_name.pop(spec.name, None)
        if have is None:
            steps.append(Step(Action.CREATE, spec.key, spec.name, spec.component, (_create_reason(spec, changes),), spec))
        elif have.spec_hash != spec.spec_hash:
            steps.append(Step(Action.RECREATE, spec.key, spec.name, spec.component,
                              _recreate_reasons(spec, have, changes), spec, have))
        elif not have.running:
            steps.append(Step(Action.START, spec.key, spec.name, spec.component,
                              ("stopped, spec unchanged",), spec, have))
        else:
            steps.append(Step(Action.UNCHANGED, spec.key, spec.name, spec.component, (), spec, have))
    for have in by_name.values():
        why = [_describe(c) for c in changes if c[0] == PROVIDERS and c[1][:2] == ("providers", have.key)]
        why += [_describe(c) for c in changes if c == (STACK, ("name",))]
        steps.append(Step(Action.REMOVE, have.key, have.name, have.component,
                          tuple(why) or ("no longer in the spec",), None, have))
    ports = {c.port for c in desired.containers}
    steps.sort(key=lambda s: (s.action is Action.UNCHANGED, _phase(s, ports), s.key))
    result = Plan(steps=tuple(steps), warnings=tuple(sorted(warnings)))
    return _with_review(result, base, desired) if base is not None or not actual else result


def _create_reason(spec: ContainerSpec, changes: Sequence[SourceChange]) -> str:
    feeding = [c for c in changes if _feeds(spec, c) and not is_informational(*c)]
    if feeding:
        return "new: " + _describe(feeding[0])
    return "new: " + (f"{PROVIDERS}: {spec.key}" if spec.component == "provider" else f"{STACK}: {spec.component}")


def _with_review(p: Plan, base: Desired | None, head: Desired) -> Plan:
    old_routes = base.routes if base else {}
    old_aliases = base.aliases if base else {}
    old_names, new_names = set(old_routes) | set(old_aliases), set(head.routes) | set(head.aliases)
    rerouted = {}
    for name in sorted(old_names & new_names):
        a = ", ".join(old_routes.get(name, ())) or f"alias of {old_aliases.get(name)}"
        b = ", ".join(head.routes.get(name, ())) or f"alias of {head.aliases.get(name)}"
        if a != b:
            rerouted[name] = (a, b)
    diff = "".join(difflib.unified_diff(
        (base.config_text if base else "").splitlines(keepends=True), head.config_text.splitlines(keepends=True),
        fromfile="litellm-config.yaml (base)", tofile="litellm-config.yaml (head)"))
    notes = _notes(p, base, head, old_names - new_names)
    return Plan(steps=p.steps, config_diff=diff, models_added=tuple(sorted(new_names - old_names)),
                models_removed=tuple(sorted(old_names - new_names)), models_rerouted=rerouted,
                warnings=p.warnings, notes=tuple(notes))


def _gpu_holders(desired: Desired | None) -> dict[str, list[str]]:
    holders: dict[str, list[str]] = {}
    for c in desired.containers if desired else ():
        if c.provider_type == "vllm" and c.gpus is not None:
            for gpu in (("all",) if c.gpus == "all" else c.gpus):
                holders.setdefault(gpu, []).append(c.key)
    return holders


def _notes(p: Plan, base: Desired | None, head: Desired, removed: set[str]) -> list[str]:
    notes = []
    # a container removed under one name and created under another (a stack rename) restarts too
    replaced = ({s.key for s in p.changes if s.action is Action.CREATE}
                & {s.key for s in p.changes if s.action is Action.REMOVE})
    restarts = [s for s in p.changes if s.action is Action.RECREATE
                or s.action is Action.CREATE and s.key in replaced]
    gateway_restarts = any(s.component == "gateway" for s in restarts)
    restarting = {s.key for s in p.changes if s.component == "provider" and s.action is not Action.CREATE}
    for step in restarts:
        if step.component == "gateway":
            notes.append("The gateway restarts: requests to every model fail for the ~10 s LiteLLM takes to boot.")
        elif step.component == "provider" and base:
            notes += _restart_note(step, base, head, restarting, gateway_restarts)
        elif step.component == "cache":
            notes.append("The cache restarts empty: cached responses are lost.")
    old, new = _gpu_holders(base), _gpu_holders(head)
    for gpu in sorted(set(old) | set(new)):
        a, b = ", ".join(old.get(gpu, [])), ", ".join(new.get(gpu, []))
        where = "every GPU" if gpu == "all" else f"GPU {gpu}"
        if a and b and a != b:
            notes.append(f"The {where} holder changes from {a} to {b}: {a} stops before {b} starts.")
        elif b and not a:
            notes.append(f"{b} takes {where}.")
        elif a and not b:
            notes.append(f"{a} stops and frees {where}.")
    if removed:
        notes.append("Clients asking for " + ", ".join(sorted(removed)) + " will get 'model not found'.")
    return notes


def _restart_note(step: Step, base: Desired, head: Desired, restarting: set[str], gateway_restarts: bool) -> list[str]:
    """Which public names go dark while a provider restarts, and which keep another route."""
    def down(route: str) -> bool:
        return route.split("/", 1)[0] in restarting

    mine = step.key + "/"
    served = {n: routes for n, routes in base.routes.items() if any(r.startswith(mine) for r in routes)}
    if not served:
        return []
    dark = {n for n, routes in served.items() if all(down(r) for r in routes)}
    shared = sorted(set(served) - dark)
    alone = sorted(dark | {alias for alias, target in base.aliases.items() if target in dark})
    wait = step.desired.startup_timeout_s if step.desired else 0
    parts = []
    if alone:
        live = {} if gateway_restarts else {
            n: [t for t in head.fallbacks.get(n, []) if not all(down(r) for r in head.routes.get(t, ("x/",)))]
            for n in alone}
        parts.append(", ".join(alone) + f" unavailable for up to {wait} s" + _fallback_note(live))
    if shared:
        parts.append(", ".join(shared) + " keep their other providers meanwhile")
    return [f"`{step.key}` restarts: " + "; ".join(parts) + "."]


def _fallback_note(live: dict[str, list[str]]) -> str:
    """`live`: for each dark name, the fallbacks that stay up (empty while the gateway restarts)."""
    covered = [f"{n} falls back to {chain[0]}" for n, chain in live.items() if chain]
    return (" (meanwhile " + "; ".join(covered) + ")") if covered else ""
