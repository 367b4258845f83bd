"""The public model catalog: which public name routes to which provider models.

Shared by the rules (references, collisions) and the renderer (model_list, fallbacks,
aliases). Resolution follows SPEC.md: every model of every provider is served under its
own name unless an `exact_matches` entry gives it a public name; `load_balancing` adds
names served by several providers; `capabilities` become aliases. Names whose providers
are disabled are kept apart (`inactive`) so that a reference to them is a warning, not
an error. Pure.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from controller.spec import models


@dataclass(frozen=True)
class Deployment:
    """One route of a public name: a provider's backend model, with an optional weight."""

    public: str
    provider: str
    model: str
    weight: float | None = None
    origin: tuple[str, tuple[object, ...]] = ("providers.yaml", ())  # (file, loc) that made it

    @property
    def id(self) -> str:
        """LiteLLM's `model_info.id`: stable across commits, so its health and cooldown state is kept."""
        return f"{self.provider}/{self.model}@{self.public}"


@dataclass
class Catalog:
    public: dict[str, list[Deployment]] = field(default_factory=dict)   # served names
    inactive: dict[str, str] = field(default_factory=dict)              # name -> why it is not served
    claimed: set[tuple[str, str]] = field(default_factory=set)           # (provider, model) renamed

    def knows(self, name: str) -> bool:
        return name in self.public or name in self.inactive


def routable(provider: models.Provider) -> bool:
    return provider.status == "active"


def default_model(provider: models.Provider) -> str | None:
    """The backend model used when a mapping names only the provider: its only model."""
    return provider.models[0].name if len(provider.models) == 1 else None


def _exact_targets(spec: models.Spec) -> Iterator[tuple[str, str, str]]:
    """(public name, provider, backend model) for each resolvable exact_matches entry."""
    for public, entry in spec.mappings.exact_matches.items():
        provider = spec.providers.providers.get(entry.provider)
        if provider is None:
            continue
        model = entry.backend_model or default_model(provider)
        if model is not None and any(m.name == model for m in provider.models):
            yield public, entry.provider, model


def _inactive_reason(name: str, provider: models.Provider) -> str:
    return f"provider `{name}` is {provider.status}"


def build(spec: models.Spec) -> Catalog:
    """Resolve every public name. Unresolvable references are skipped here; rules report them."""
    cat = Catalog()
    providers = spec.providers.providers

    def add(dep: Deployment) -> None:
        if routable(providers[dep.provider]):
            cat.public.setdefault(dep.public, []).append(dep)
        else:
            cat.inactive.setdefault(dep.public, _inactive_reason(dep.provider, providers[dep.provider]))

    for public, provider, model in _exact_targets(spec):
        cat.claimed.add((provider, model))
        add(Deployment(public, provider, model, origin=("model-mappings.yaml", ("exact_matches", public))))
    for pname, provider in providers.items():
        for i, model in enumerate(provider.models):
            if (pname, model.name) not in cat.claimed:
                add(Deployment(model.name, pname, model.name,
                               origin=("providers.yaml", ("providers", pname, "models", i))))
    for public, group in spec.mappings.load_balancing.items():
        for i, target in enumerate(group.providers):
            provider = providers.get(target.provider)
            model = (target.model or default_model(provider)) if provider else None
            if provider is None or model is None or not any(m.name == model for m in provider.models):
                continue
            add(Deployment(public, target.provider, model, target.weight,
                           origin=("model-mappings.yaml", ("load_balancing", public, "providers", i))))
    # a name with at least one live route is served, whatever else is disabled
    for name in list(cat.inactive):
        if name in cat.public:
            del cat.inactive[name]
    return cat


@dataclass(frozen=True)
class Routing:
    """Aliases and fallbacks as LiteLLM will see them, plus what had to be dropped and why."""

    aliases: dict[str, str]
    fallbacks: dict[str, list[str]]
    dropped: list[tuple[str, tuple[object, ...], str]]  # (file, loc, message) for warnings


Dropped = list[tuple[str, tuple[object, ...], str]]
MM = "model-mappings.yaml"


def routing(spec: models.Spec, cat: Catalog) -> Routing:
    """Capabilities -> aliases; fallback chains (and `default`) -> one chain per served name.

    LiteLLM looks fallbacks up by the *requested* name and does not follow an alias to its
    target's chain, so every alias gets a chain of its own: the rest of its preferred models,
    then its target's chain. `chain: []` means "no fallback", also not the default one; a
    chain whose every entry is dropped (disabled providers) falls back to the default.
    """
    dropped: Dropped = []
    chains = _chains(spec, cat, dropped)
    aliases, alias_chains = _aliases(spec, cat, chains, dropped)
    chains = _without_dropped_aliases(spec, chains, aliases, dropped)
    default = chains.get("default", [])
    fallbacks: dict[str, list[str]] = {}
    for name in sorted(cat.public):
        chain = _dedupe(chains.get(name, default), exclude={name})
        if chain:
            fallbacks[name] = chain
    for cap in sorted(aliases):
        chain = _dedupe(chains.get(cap, alias_chains[cap]), exclude={cap, aliases[cap]})
        if chain:
            fallbacks[cap] = chain
    return Routing(aliases=aliases, fallbacks=fallbacks, dropped=dropped)


def _chains(spec: models.Spec, cat: Catalog, dropped: Dropped) -> dict[str, list[str]]:
    """Each written chain without the names that are not served (reported in `dropped`)."""
    chains: dict[str, list[str]] = {}
    for key, entry in spec.mappings.fallback_chains.items():
        if key != "default" and key in cat.inactive:
            dropped.append((MM, ("fallback_chains", key), f"chain dropped: {cat.inactive[key]}"))
            continue
        kept = []
        for i, name in enumerate(entry.chain):
            if name in cat.inactive:
                dropped.append((MM, ("fallback_chains", key, "chain", i),
                                f"`{name}` dropped from the chain: {cat.inactive[name]}"))
            elif name != key and name not in kept:
                kept.append(name)
        if kept or not entry.chain:  # an explicit [] opts out; an emptied chain yields to the default
            chains[key] = kept
    return chains


def _without_dropped_aliases(spec: models.Spec, chains: dict[str, list[str]], aliases: dict[str, str],
                             dropped: Dropped) -> dict[str, list[str]]:
    """A capability whose alias was dropped is no name LiteLLM knows: take it out of chains."""
    gone = set(spec.mappings.capabilities) - set(aliases)
    out: dict[str, list[str]] = {}
    for key, chain in chains.items():
        kept = [n for n in chain if n not in gone]
        for name in chain:
            if name in gone:
                dropped.append((MM, ("fallback_chains", key, "chain", spec.mappings.fallback_chains[key].chain.index(name)),
                                f"`{name}` dropped from the chain: its alias was dropped"))
        if kept or not chain:
            out[key] = kept
    return out


def _aliases(spec: models.Spec, cat: Catalog, chains: dict[str, list[str]],
             dropped: Dropped) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Each capability -> (the alias target, the alias's own fallbacks)."""
    aliases: dict[str, str] = {}
    alias_chains: dict[str, list[str]] = {}
    for cap, entry in spec.mappings.capabilities.items():
        live = [m for m in entry.preferred_models if m in cat.public]
        for i, name in enumerate(entry.preferred_models):
            if name in cat.inactive:
                dropped.append((MM, ("capabilities", cap, "preferred_models", i),
                                f"`{name}` skipped: {cat.inactive[name]}"))
        if not live:
            if any(m in cat.inactive for m in entry.preferred_models):  # unknown names are errors already
                dropped.append((MM, ("capabilities", cap), "alias dropped: none of its preferred models is served"))
            continue
        aliases[cap] = live[0]
        rest = live[1:] + chains.get(live[0], chains.get("default", []))
        alias_chains[cap] = _dedupe(rest, exclude={cap, live[0]})
    return aliases, alias_chains


def _dedupe(names: list[str], *, exclude: set[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        if name not in exclude and name not in out:
            out.append(name)
    return out
