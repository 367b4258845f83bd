"""Rules about LiteLLM itself: the features it lacks, and the settings it accepts.

Part of the rules step of the pipeline. `condition:` routing, per-group strategies,
`routing_rules`, regex `patterns` and unknown strategies are errors that say what LiteLLM
can do instead; `router_settings` and `litellm_settings` keys are checked against the
pinned LiteLLM (controller/spec/litellm_keys.py). Pure.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from controller.spec import catalog as catalog_mod
from controller.spec import litellm_keys, models
from controller.spec.findings import Findings
from controller.spec.load import MAPPINGS, STACK

# Keys the controller writes itself, with what to write instead. The mapping-derived ones
# are refused in router_settings and litellm_settings alike (LiteLLM reads both).
_FROM_MAPPINGS = {
    "model_list": "the controller writes it from providers.yaml and model-mappings.yaml",
    "fallbacks": "use fallback_chains in model-mappings.yaml",
    "default_fallbacks": "use the `default` entry of fallback_chains in model-mappings.yaml",
    "model_group_alias": "use capabilities in model-mappings.yaml",
}
CONTROLLER_ROUTER_KEYS = {
    **_FROM_MAPPINGS,
    **dict.fromkeys(("redis_host", "redis_port", "redis_url", "redis_password"),
                    "the controller wires the cache from stack.yaml `cache:`"),
}
CONTROLLER_LITELLM_KEYS = {
    **_FROM_MAPPINGS,
    "cache": "the controller turns the cache on when stack.yaml has `cache:`",
    "cache_params": "the controller writes it from stack.yaml `cache:`",
    "master_key": "the master key is read from the variable named by gateway.master_key_env",
}
# Router keys that belong to LiteLLM's general_settings, which the controller does not expose.
GENERAL_SETTINGS_KEYS = {"health_check_interval", "health_check_concurrency", "background_health_checks"}
# Fallback maps users may set themselves; their targets must still be public names.
TARGET_MAPS = ("context_window_fallbacks", "content_policy_fallbacks")


def features(spec: models.Spec, cat: catalog_mod.Catalog, ctx: Findings) -> None:
    mm = spec.mappings
    if mm.routing_rules is not None:
        ctx.add(MAPPINGS, ("routing_rules",), "LiteLLM has no routing rules",
                "use fallback_chains for failover, load_balancing for weighted routing, and "
                "capabilities for task aliases that clients pick by name")
    if mm.patterns is not None:
        ctx.add(MAPPINGS, ("patterns",), "LiteLLM does not route by regex patterns",
                "give each model a public name in exact_matches; clients must ask for an exact name")
    if mm.routing_strategy is not None:
        valid = mm.routing_strategy in litellm_keys.ROUTING_STRATEGIES
        ctx.add(MAPPINGS, ("routing_strategy",), "the routing strategy is stack-wide in LiteLLM"
                + ("" if valid else f", and LiteLLM has no strategy `{mm.routing_strategy}`"),
                "set gateway.router_settings.routing_strategy in stack.yaml"
                + ("" if valid else " to one of: " + ", ".join(litellm_keys.ROUTING_STRATEGIES)))
    stack_strategy = spec.stack.gateway.router_settings.get("routing_strategy", "simple-shuffle")
    for public, group in mm.load_balancing.items():
        for i, target in enumerate(group.providers):
            if target.condition is not None:
                ctx.add(MAPPINGS, ("load_balancing", public, "providers", i, "condition"),
                        "LiteLLM cannot route on conditions",
                        "use weights, or a separate public name (exact_matches) per case")
        if group.strategy is not None and group.strategy != stack_strategy:
            ctx.add(MAPPINGS, ("load_balancing", public, "strategy"),
                    f"per-group strategy `{group.strategy}`: LiteLLM applies one strategy to the whole stack "
                    f"(here `{stack_strategy}`)",
                    "remove `strategy:` and set gateway.router_settings.routing_strategy in stack.yaml; "
                    "weights work with simple-shuffle")
    _router_settings(spec, cat, ctx)


def _fallback_targets(spec: models.Spec, cat: catalog_mod.Catalog, loc: tuple[Any, ...], value: Any,
                      ctx: Findings) -> None:
    """`[{public: [public, ...]}]`: LiteLLM does not check the names; a typo silently never fires."""
    if value is None:
        return
    known = set(cat.public) | set(spec.mappings.capabilities)
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        ctx.add(STACK, loc, "must be a list of `{public-name: [fallback, ...]}`", "see LiteLLM's router settings")
        return
    for i, entry in enumerate(value):
        for source, targets in entry.items():
            names = [source, *(targets if isinstance(targets, list) else [targets])]
            if not all(isinstance(n, str) for n in names):
                ctx.add(STACK, (*loc, i), "must be `{public-name: [fallback, ...]}` with names only",
                        "write e.g. `- my-model: [other-model]`")
                continue
            for name in names:
                if name not in known:
                    ctx.add(STACK, (*loc, i), f"`{name}` is not a public model name",
                            "public names: " + ", ".join(sorted(known)))


def _router_settings(spec: models.Spec, cat: catalog_mod.Catalog, ctx: Findings) -> None:
    gw = spec.stack.gateway
    for key, value in gw.router_settings.items():
        loc = ("gateway", "router_settings", key)
        if key in GENERAL_SETTINGS_KEYS:
            ctx.add(STACK, loc, f"`{key}` is a LiteLLM general_settings key, not a router setting",
                    "the controller does not set general_settings other than the master key; remove it")
        elif not _known_setting(loc, CONTROLLER_ROUTER_KEYS, litellm_keys.ROUTER_ARGS,
                                "not a LiteLLM router setting", "Router() arguments", ctx):
            continue
        elif key != "routing_strategy" and not _fits(value, litellm_keys.ROUTER_ARG_KINDS.get(key, "any")):
            kind = litellm_keys.ROUTER_ARG_KINDS[key]
            ctx.add(STACK, loc, f"`{key}` must be {_KIND_WORDS.get(kind, kind.replace('choice:', 'one of: '))}"
                    f" (LiteLLM would refuse to start)", "see LiteLLM's router settings for this key")
        elif key == "routing_strategy" and value not in litellm_keys.ROUTING_STRATEGIES:
            ctx.add(STACK, loc, f"LiteLLM has no routing strategy `{value}`",
                    "LiteLLM's strategies: " + ", ".join(litellm_keys.ROUTING_STRATEGIES)
                    + "; for task-based routing, define capabilities and let clients ask for them")
    for section in ("router_settings", "litellm_settings"):
        for key in TARGET_MAPS:
            _fallback_targets(spec, cat, ("gateway", section, key), getattr(gw, section).get(key), ctx)
    special = spec.mappings.special_cases
    errors, limited = special.error_based_routing, special.rate_limited_fallback
    if (errors and errors.enabled and limited and limited.enabled
            and errors.cooldown_seconds != limited.fallback_duration_seconds):
        ctx.add(MAPPINGS, ("special_cases", "rate_limited_fallback", "fallback_duration_seconds"),
                f"LiteLLM has one cooldown_time for every error; error_based_routing's "
                f"{errors.cooldown_seconds} s is used, not {limited.fallback_duration_seconds} s",
                "make the two durations equal", warning=True)
    strategy = gw.router_settings.get("routing_strategy", "simple-shuffle")
    for public, group in spec.mappings.load_balancing.items():
        if strategy != "simple-shuffle" and any(t.weight is not None for t in group.providers):
            ctx.add(MAPPINGS, ("load_balancing", public),
                    f"weights are used only by simple-shuffle; the stack routes with `{strategy}`",
                    "remove the weights, or use routing_strategy: simple-shuffle", warning=True)
    # what special_cases render to (render/litellm.py) must not also be set by hand
    written = {"error_based_routing": ("allowed_fails", "cooldown_time"),
               "rate_limited_fallback": ("allowed_fails_policy", "cooldown_time")}
    for case, keys in written.items():
        source = getattr(special, case)
        for key in keys:
            if source is not None and source.enabled and key in gw.router_settings:
                ctx.add(STACK, ("gateway", "router_settings", key),
                        f"`{key}` is also set by special_cases.{case} in model-mappings.yaml",
                        "keep one of them")
    for key in gw.litellm_settings:
        _known_setting(("gateway", "litellm_settings", key), CONTROLLER_LITELLM_KEYS, litellm_keys.LITELLM_SETTINGS,
                       "not a LiteLLM setting (LiteLLM would silently ignore it)", "litellm_settings", ctx)


_KIND_WORDS = {"int": "a whole number", "number": "a number", "bool": "true or false", "str": "text",
               "list": "a list", "mapping": "a mapping of keys"}


def _fits(value: Any, kind: str) -> bool:
    """Whether a YAML value can be what a Router argument of this kind accepts (null: its default)."""
    if value is None or kind == "any":
        return True
    if kind.startswith("choice:"):
        return str(value) in kind.removeprefix("choice:").split("|")
    checks: dict[str, Any] = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "list": lambda v: isinstance(v, list),
        "mapping": lambda v: isinstance(v, dict),
    }
    return bool(checks.get(kind, lambda v: True)(value))


def _known_setting(loc: tuple[str, str, str], owned: Mapping[str, str], known: frozenset[str],
                   unknown: str, docs: str, ctx: Findings) -> bool:
    """Report a key the controller writes itself or LiteLLM does not know; True when it is fine."""
    key = loc[-1]
    if key in owned:
        ctx.add(STACK, loc, "the controller writes this key itself", owned[key])
        return False
    if key not in known:
        close = difflib.get_close_matches(key, sorted(known), n=1)
        ctx.add(STACK, loc, f"`{key}`: {unknown}" + (f"; did you mean `{close[0]}`?" if close else ""),
                f"see {docs} of LiteLLM {litellm_keys.LITELLM_VERSION}", subject=".".join(loc[:2]))
        return False
    return True
