"""Spec -> the LiteLLM proxy's config.yaml, as a plain dict and as deterministic text.

Fourth step of the pipeline (Spec -> Desired). Follows the LiteLLM conventions in
shared/research/runtime-conventions.md: `hosted_vllm/` with `/v1`, `ollama_chat/` without
it, `openai/` with `/v1` for llama.cpp and OpenAI-compatible servers, keys only as
`os.environ/NAME`, a stable `model_info.id` per deployment, one fallback entry per alias
(LiteLLM does not follow an alias to its target's chain). Pure.
"""

from __future__ import annotations

from typing import Any

import yaml

from controller.spec import catalog as catalog_mod
from controller.spec import models, yamlpos

HEADER = "# Rendered by llm-gitops from the spec repo. Do not edit: change the spec in git.\n"
PREFIX = {"vllm": "hosted_vllm", "ollama": "ollama_chat", "llama_cpp": "openai",
          "openai_compatible": "openai", "openai": "openai", "anthropic": "anthropic"}
# libyaml's emitter: the same text as PyYAML's, ten times faster on a thousand providers.
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
# LiteLLM's openai/ route insists on *some* key; local servers without auth ignore it.
NO_KEY = "no-key"


def _with_v1(url: str) -> str:
    return url if url.endswith("/v1") else url + "/v1"


def _reachable(url: str | None) -> str | None:
    """A server listening on every address (0.0.0.0, ::) is reached on the loopback address."""
    if url is None:
        return None
    host = models.address(url)[0]
    near = models.reachable_host(host)
    return url if near == host else url.replace(models.url_host(host), models.url_host(near), 1)


def _params(provider: models.Provider, model: models.Model, weight: float | None) -> dict[str, Any]:
    params: dict[str, Any] = {"model": f"{PREFIX[provider.type]}/{model.name}"}
    url = _reachable(provider.base_url)
    if provider.type == "ollama" and url is not None:
        # Always an api_base for ollama (rules require base_url): without one the proxy
        # spawns `ollama serve` itself. LiteLLM's ollama routes add their own paths: no /v1.
        params["api_base"] = url.removesuffix("/v1")
    elif provider.type == "anthropic" and url is not None:
        params["api_base"] = url.removesuffix("/v1")  # LiteLLM appends /v1/messages itself
    elif url is not None:
        params["api_base"] = _with_v1(url)
    key_env = provider.env_var or (provider.api_key.removeprefix("os.environ/") if provider.api_key else None)
    if key_env:
        params["api_key"] = f"os.environ/{key_env}"
    elif provider.type in ("llama_cpp", "openai_compatible"):
        params["api_key"] = NO_KEY
    if model.options:
        params["extra_body"] = {"options": _plain(model.options)}
    if weight is not None:
        params["weight"] = weight
    return params


def _model_of(provider: models.Provider, name: str) -> models.Model:
    return next(m for m in provider.models if m.name == name)


def model_list(spec: models.Spec, cat: catalog_mod.Catalog) -> list[dict[str, Any]]:
    entries = []
    for public in sorted(cat.public):
        for dep in sorted(cat.public[public], key=lambda d: (d.provider, d.model)):
            provider = spec.providers.providers[dep.provider]
            model = _model_of(provider, dep.model)
            info: dict[str, Any] = {"id": dep.id}
            if model.context_length:
                info["max_input_tokens"] = model.context_length
            entries.append({"model_name": public, "litellm_params": _params(provider, model, dep.weight),
                            "model_info": info})
    return entries


def _special_cases(spec: models.Spec) -> dict[str, Any]:
    """error_based_routing -> allowed_fails + cooldown_time; rate_limited_fallback -> a
    deployment that answers 429 cools down at once, for fallback_duration_seconds unless
    error_based_routing already sets the (single, stack-wide) cooldown_time."""
    out: dict[str, Any] = {}
    special = spec.mappings.special_cases
    errors, limited = special.error_based_routing, special.rate_limited_fallback
    if limited is not None and limited.enabled:
        out["allowed_fails_policy"] = {"RateLimitErrorAllowedFails": 0}
        out["cooldown_time"] = limited.fallback_duration_seconds
    if errors is not None and errors.enabled:
        out["allowed_fails"] = errors.error_threshold
        out["cooldown_time"] = errors.cooldown_seconds
    return out


def render_config(spec: models.Spec, cat: catalog_mod.Catalog, routing: catalog_mod.Routing) -> dict[str, Any]:
    """The whole LiteLLM config as a dict; key order is fixed so the text is deterministic."""
    gw = spec.stack.gateway
    router: dict[str, Any] = {"routing_strategy": "simple-shuffle"}
    router.update(_plain(gw.router_settings))  # user keys sorted; ours follow in a fixed order
    router.update(_special_cases(spec))
    if routing.fallbacks:
        router["fallbacks"] = [{name: chain} for name, chain in sorted(routing.fallbacks.items())]
    if routing.aliases:
        router["model_group_alias"] = dict(sorted(routing.aliases.items()))
    settings: dict[str, Any] = _plain(gw.litellm_settings)
    cache = spec.stack.cache
    if cache is not None:
        host, port = models.address(cache.base_url)
        router["redis_host"], router["redis_port"] = host, port
        settings["cache"] = True
        settings["cache_params"] = {"type": "redis", "host": host, "port": port,
                                    "namespace": "litellm.cache", "ttl": cache.ttl}
    return {
        "model_list": model_list(spec, cat),
        "router_settings": router,
        "litellm_settings": settings,
        "general_settings": {"master_key": f"os.environ/{gw.master_key_env}"},
    }


def _plain(value: Any) -> Any:
    """User-written YAML -> plain data for dumping: our loader's positioned dicts, lists and
    numbers become plain ones, and mappings are sorted, so that reordering keys in git does
    not change the config's digest (and restart the gateway)."""
    if isinstance(value, dict):
        return {k: _plain(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return yamlpos.plain_scalar(value)


def dump(config: dict[str, Any]) -> str:
    """The config file's text: same dict, same bytes (no timestamps, no revision)."""
    return HEADER + yaml.dump(config, Dumper=DUMPER, sort_keys=False, default_flow_style=False, width=100)


def public_names(config: dict[str, Any]) -> list[str]:
    """Every name a LiteLLM proxy running `config` lists on /v1/models: the model groups and
    the aliases (model_group_alias). From the config itself, so that it also holds for a
    state dir's snapshot of an applied commit, which keeps no catalog."""
    names = {str(m.get("model_name")) for m in config.get("model_list") or [] if isinstance(m, dict)}
    aliases = (config.get("router_settings") or {}).get("model_group_alias") or {}
    return sorted(names | {str(a) for a in aliases})


def master_key_env(config: dict[str, Any]) -> str | None:
    """The variable the proxy reads its master key from (`os.environ/NAME`), if it has one."""
    key = (config.get("general_settings") or {}).get("master_key")
    return key.removeprefix("os.environ/") if isinstance(key, str) and key.startswith("os.environ/") else None
