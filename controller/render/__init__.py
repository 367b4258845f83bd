"""Spec -> Desired: what one commit wants running. The renderer of the pure core.

`render(spec)` returns the LiteLLM config (dict and exact file text), the container specs
with their hashes, and the public routing (names, routes, aliases, fallbacks) that the
plan compares between commits. Same spec, same bytes: nothing here reads the clock, the
environment or the disk; secret fingerprints and the host name are passed in.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.render import containers, litellm
from controller.render.containers import ContainerSpec
from controller.spec import catalog as catalog_mod
from controller.spec import models


@dataclass(frozen=True)
class Desired:
    stack: str
    litellm_config: dict[str, Any]
    config_text: str
    config_digest: str                   # sha256 of config_text; the gateway's spec hash covers it
    containers: tuple[ContainerSpec, ...]
    routes: dict[str, tuple[str, ...]]   # public name -> sorted "provider/model[ (weight w)]" routes
    aliases: dict[str, str]
    fallbacks: dict[str, list[str]]
    gateway_url: str

    @property
    def public_models(self) -> list[str]:
        """Every name the gateway answers /v1/models with: served names and aliases."""
        return sorted(set(self.routes) | set(self.aliases))

    def container(self, key: str) -> ContainerSpec | None:
        return next((c for c in self.containers if c.key == key), None)

    def snapshot(self) -> dict[str, Any]:
        """What `from_snapshot` needs to act on this state again without the spec: the
        state dir keeps the last applied commit's, so going back needs no git."""
        return {"stack": self.stack, "litellm_config": self.litellm_config, "config_text": self.config_text,
                "config_digest": self.config_digest, "gateway_url": self.gateway_url,
                "containers": [c.model_dump(mode="json") for c in self.containers]}

    @classmethod
    def from_snapshot(cls, body: dict[str, Any]) -> Desired:
        """Raises ValueError or pydantic's ValidationError (a ValueError) on a damaged body."""
        return cls(stack=str(body["stack"]), litellm_config=dict(body["litellm_config"]),
                   config_text=str(body["config_text"]), config_digest=str(body["config_digest"]),
                   containers=tuple(ContainerSpec.model_validate(c) for c in body["containers"]),
                   routes={}, aliases={}, fallbacks={}, gateway_url=str(body["gateway_url"]))

    def as_dict(self) -> dict[str, Any]:
        """The shape `llm-gitops render` prints."""
        return {"litellm_config": self.litellm_config,
                "containers": [containers.as_dict(c) for c in self.containers]}


def render(spec: models.Spec, *, secret_fingerprints: Mapping[str, str] | None = None,
           host_name: str | None = None) -> Desired:
    """Render a Spec that passed the rules.

    `host_name`: the controller's `--host-name`; providers placed on another host are left
    out. None (validate, render, plan in a pull request) keeps every provider.
    """
    fingerprints = secret_fingerprints or {}
    cat = catalog_mod.build(spec)
    routing = catalog_mod.routing(spec, cat)
    config = litellm.render_config(spec, cat, routing)
    text = litellm.dump(config)
    digest = hashlib.sha256(text.encode()).hexdigest()
    specs: list[ContainerSpec] = []
    cache = containers.cache_container(spec)
    if cache is not None:
        specs.append(cache)
    for name in sorted(spec.providers.providers):
        p = spec.providers.providers[name]
        if p.status != "active" or p.container is None:
            continue
        if host_name is not None and p.container.host not in (None, host_name):
            continue
        specs.append(containers.provider_container(spec.stack.name, name, p, p.container))
    specs.append(containers.gateway_container(spec, digest))
    routes = {name: tuple(sorted(_route(d) for d in deps)) for name, deps in cat.public.items()}
    return Desired(
        stack=spec.stack.name,
        litellm_config=config,
        config_text=text,
        config_digest=digest,
        containers=tuple(containers.with_hash(c, fingerprints) for c in specs),
        routes=dict(sorted(routes.items())),
        aliases=routing.aliases,
        fallbacks=routing.fallbacks,
        gateway_url=spec.stack.gateway.base_url,
    )


def with_fingerprints(desired: Desired, secret_fingerprints: Mapping[str, str]) -> Desired:
    """`desired` with its spec hashes over these secret fingerprints: what `render(spec,
    secret_fingerprints=...)` gives, without rendering again."""
    return dataclasses.replace(desired, containers=tuple(containers.with_hash(c, secret_fingerprints)
                                                         for c in desired.containers))


def _route(d: catalog_mod.Deployment) -> str:
    return f"{d.provider}/{d.model}" + (f" (weight {d.weight:g})" if d.weight is not None else "")


__all__ = ["ContainerSpec", "Desired", "render", "with_fingerprints"]
