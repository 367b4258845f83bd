"""Plan + the base and head Desired states -> what a pull-request reviewer needs to know.

After `controller.plan`: the unified diff of the rendered LiteLLM config, public models
added, removed and re-routed, the warnings this change brings (those the base had already
are counted, not repeated), and impact notes: which names go dark while a provider
restarts and where they fall back, the gateway's restart or move, who takes a GPU, which
secrets the controller's environment must newly provide. Pure.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence

from controller.errors import Problem
from controller.plan import Action, Plan, Step
from controller.render import Desired


def review(p: Plan, base: Desired | None, head: Desired, *,
           base_warnings: Sequence[Problem] = (), head_warnings: Sequence[Problem] = ()) -> Plan:
    """`p` with the review fields filled in; `base` is None when nothing ran before."""
    old_names = set(base.public_models) if base else set()
    new_names = set(head.public_models)
    seen = {(w.file, w.subject, w.message) for w in base_warnings}
    fresh = tuple(sorted(w for w in head_warnings if (w.file, w.subject, w.message) not in seen))
    return dataclasses.replace(
        p,
        config_diff="".join(difflib.unified_diff(
            (base.config_text if base else "").splitlines(keepends=True), head.config_text.splitlines(keepends=True),
            fromfile="litellm-config.yaml (base)", tofile="litellm-config.yaml (head)")),
        models_added=tuple(sorted(new_names - old_names)),
        models_removed=tuple(sorted(old_names - new_names)),
        models_rerouted=_rerouted(base, head, old_names & new_names),
        warnings=fresh,
        known_warnings=len(head_warnings) - len(fresh),
        notes=tuple(_notes(p, base, head, old_names - new_names)),
    )


def _route_text(d: Desired, name: str) -> str:
    return ", ".join(d.routes.get(name, ())) or f"alias of {d.aliases.get(name)}"


def _rerouted(base: Desired | None, head: Desired, names: set[str]) -> dict[str, tuple[str, str]]:
    if base is None:
        return {}
    pairs = {n: (_route_text(base, n), _route_text(head, n)) for n in sorted(names)}
    return {n: (a, b) for n, (a, b) in pairs.items() if a != b}


# --------------------------------------------------------------------------- impact notes


def _notes(p: Plan, base: Desired | None, head: Desired, removed: set[str]) -> list[str]:
    # a container removed under one name and created under another (a stack rename) restarts too
    replaced = ({s.key for s in p.changes if s.action is Action.CREATE}
                & {s.key for s in p.changes if s.action is Action.REMOVE})
    restarts = [s for s in p.changes if s.action is Action.RECREATE
                or s.action is Action.CREATE and s.key in replaced]
    gateway_restarts = any(s.component == "gateway" for s in restarts)
    restarting = {s.key for s in p.changes if s.component == "provider" and s.action is not Action.CREATE}
    notes = []
    for step in restarts:
        if step.component == "gateway":
            notes.append("The gateway restarts: requests to every model fail for the ~10 s LiteLLM takes to boot.")
        elif step.component == "provider" and base:
            notes += _restart_note(step, base, head, restarting, gateway_restarts)
        elif step.component == "cache":
            notes.append("The cache restarts empty: cached responses are lost.")
    notes += _gpu_notes(base, head)
    if base is not None and base.gateway_url != head.gateway_url:
        notes.append(f"The gateway moves from {base.gateway_url} to {head.gateway_url}: "
                     "every client must use the new address.")
    if removed:
        notes.append("Clients asking for " + ", ".join(sorted(removed)) + " will get 'model not found'.")
    new_secrets = _secret_names(head) - _secret_names(base)
    if new_secrets:
        notes.append("The controller's environment must now provide " + ", ".join(sorted(new_secrets)) + ".")
    return notes


def _secret_names(d: Desired | None) -> set[str]:
    return {name for c in d.containers for name in c.secret_env} if d else set()


def _gpu_holders(desired: Desired | None) -> dict[str, list[str]]:
    holders: dict[str, list[str]] = {}
    for c in desired.containers if desired else ():
        if c.provider_type == "vllm" and c.gpus is not None:
            for gpu in (("all",) if c.gpus == "all" else c.gpus):
                holders.setdefault(gpu, []).append(c.key)
    return holders


def _gpu_notes(base: Desired | None, head: Desired) -> list[str]:
    notes = []
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
    return notes


def _restart_note(step: Step, base: Desired, head: Desired, restarting: set[str], gateway_restarts: bool) -> list[str]:
    """Which public names go dark while a provider restarts, and which keep another route."""
    def down(route: str) -> bool:
        return route.split("/", 1)[0] in restarting

    def up(name: str) -> bool:  # a fallback target (maybe an alias) that still has a live route
        routes = head.routes.get(head.aliases.get(name, name), ())
        return bool(routes) and not all(down(r) for r in routes)

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
        live = {} if gateway_restarts else {n: [t for t in head.fallbacks.get(n, []) if up(t)] for n in alone}
        covered = [f"{n} falls back to {chain[0]}" for n, chain in live.items() if chain]
        parts.append(", ".join(alone) + f" unavailable for up to {wait} s"
                     + (" (meanwhile " + "; ".join(covered) + ")" if covered else ""))
    if shared:
        parts.append(", ".join(shared) + " still served by other providers")
    return [f"`{step.key}` restarts: " + "; ".join(parts) + "."]
