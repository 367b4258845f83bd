"""The rules of SPEC.md "Rules checked before anything runs", over a parsed Spec.

Third step of the pipeline (after YAML and shapes). `check` runs every rule and returns
every violation at once, located through the raw YAML positions: provider consistency,
references and public names, ports, GPUs, and the warnings here; secrets and policy in
`safety`; what LiteLLM cannot do in `litellm_rules`. Pure: no I/O.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.errors import Problem
from controller.spec import catalog as catalog_mod
from controller.spec import litellm_rules, models, safety
from controller.spec.findings import Findings, containers, flag, ploc
from controller.spec.load import MAPPINGS, PROVIDERS, STACK
from controller.spec.safety import image_allowed

MAX_FALLBACKS = 5  # LiteLLM's ROUTER_MAX_FALLBACKS, unless router_settings.max_fallbacks says otherwise
RESERVED_NAMES = ("gateway", "cache")  # container names are <stack>-<provider>, <stack>-gateway, <stack>-cache
MOVING_TAGS = {"main", "stable", "nightly", "dev", "edge"}


def check(spec: models.Spec, raw: Mapping[str, Any]) -> list[Problem]:
    """Every rule over `spec`; `raw` is the positioned YAML data used to locate findings."""
    found = Findings(raw)
    cat = catalog_mod.build(spec)
    for rule in (_providers, _references, _collisions, _ports, _gpus, safety.secrets, safety.policy,
                 litellm_rules.features, _warnings):
        rule(spec, cat, found)
    return sorted(set(found.problems))  # a rule checked per host may find the same thing twice


# --------------------------------------------------------------------------- helpers


def _models_hint(spec: models.Spec, provider: str) -> str:
    names = [m.name for m in spec.providers.providers[provider].models]
    return f"`{provider}` is a provider; its models are: {', '.join(names) or '(none)'}"


def _unknown_name(spec: models.Spec, cat: catalog_mod.Catalog, name: str,
                  *, aliases_allowed: bool = True) -> tuple[str, str]:
    """Message and hint for a public model name that exists nowhere."""
    if name in spec.providers.providers:
        return f"`{name}` is a provider, not a model", _models_hint(spec, name)
    if name in spec.mappings.capabilities:
        return (f"`{name}` is a capability alias; an alias cannot point at another alias",
                f"name one of `{name}`'s preferred models instead")
    renamed = [public for public, e in spec.mappings.exact_matches.items()
               if name in (e.backend_model, catalog_mod.default_model(spec.providers.providers[e.provider])
                           if e.provider in spec.providers.providers else None)]
    if renamed:
        return (f"`{name}` is not a public name: exact_matches serves it as `{renamed[0]}`",
                f"write `{renamed[0]}`")
    known = sorted(set(cat.public) | set(cat.inactive) | (set(spec.mappings.capabilities) if aliases_allowed else set()))
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean `{close[0]}`?" if close else "public names: " + ", ".join(known)
    return f"`{name}` is not a public model name", hint


# --------------------------------------------------------------------------- rule: providers


def _providers(spec: models.Spec, cat: catalog_mod.Catalog, ctx: Findings) -> None:
    """Per-provider consistency: base_url, container vs type, args that contradict base_url."""
    for name, p in spec.providers.providers.items():
        if name in RESERVED_NAMES:
            ctx.add(PROVIDERS, ploc(name), f"`{name}` is reserved: the stack's {name} container is "
                    f"named {spec.stack.name}-{name}", "rename the provider", subject=name)
        if p.type in ("openai", "anthropic") and p.status == "active" and not (p.env_var or p.api_key):
            ctx.add(PROVIDERS, ploc(name), f"an {p.type} provider needs its API key: every call would be refused",
                    "set `env_var: NAME` (e.g. OPENAI_API_KEY) and give the controller that variable", subject=name)
        if p.base_url is None and p.type not in ("openai", "anthropic"):
            ctx.add(PROVIDERS, ploc(name), "`base_url` is required for type " + p.type,
                    "add e.g. `base_url: http://127.0.0.1:8000`", subject=name)
        if p.status == "active" and not p.models:
            ctx.add(PROVIDERS, ploc(name), "active provider has no models; it serves nothing",
                    "list its models under `models:`", warning=True, subject=name)
        seen: set[str] = set()
        for i, model in enumerate(p.models):
            if model.name in seen:
                ctx.add(PROVIDERS, ploc(name, "models", i), f"model `{model.name}` is listed twice",
                        "remove the second entry")
            seen.add(model.name)
            if model.options is not None and p.type != "ollama":
                ctx.add(PROVIDERS, ploc(name, "models", i, "options"),
                        "`options` is only for ollama providers (sent as Ollama's options)",
                        "remove it, or pass the server's own flags in container.args")
        if p.container is not None:
            _container_rules(name, p, p.container, ctx)


def _container_rules(name: str, p: models.Provider, c: models.Container, ctx: Findings) -> None:
    if p.type not in models.LOCAL_TYPES:
        ctx.add(PROVIDERS, ploc(name, "container"),
                f"`container:` is for vllm, ollama and llama_cpp providers, not {p.type}",
                "run this server yourself and point base_url at it, or change `type`")
        return
    if p.base_url is None:
        return
    host, port = models.address(p.base_url)
    if p.base_url.startswith("https://"):
        ctx.add(PROVIDERS, ploc(name, "base_url"), "a container the controller runs serves plain http",
                f"write http://{host}:{port}")
    if not _is_address(host):
        ctx.add(PROVIDERS, ploc(name, "base_url"),
                f"a container's base_url must use an IP address or localhost, not `{host}`",
                f"containers run with host networking; use e.g. http://127.0.0.1:{port}")
    if c.ipc and c.shm_size:
        ctx.add(PROVIDERS, ploc(name, "container", "shm_size"),
                "set either `ipc: host` or `shm_size`, not both", "vLLM needs one of them")
    _key_rules(name, p, c, ctx)
    if p.type == "vllm":
        _vllm_rules(name, p, c, ctx)
    _listen_rules(name, p, c, host, port, ctx)


# The variable each server reads its API key from (Ollama checks no key at all).
SERVER_KEY_VARS = {"vllm": "VLLM_API_KEY", "llama_cpp": "LLAMA_API_KEY"}


def _key_rules(name: str, p: models.Provider, c: models.Container, ctx: Findings) -> None:
    """The gateway sends the key in `env_var`; the server must receive it under the name it reads."""
    if not p.env_var:
        return
    server_var = SERVER_KEY_VARS.get(p.type)
    if server_var is None:
        ctx.add(PROVIDERS, ploc(name, "env_var"), f"{p.type} checks no API key; the gateway's key protects nothing",
                "remove env_var, or put an authenticating proxy in front of the server", warning=True)
    elif p.env_var != server_var:
        ctx.add(PROVIDERS, ploc(name, "env_var"),
                f"{p.type} reads its key from {server_var}, not {p.env_var}: the server checks nothing",
                f"set `env_var: {server_var}` and list {server_var} in container.secret_env", warning=True)
    elif server_var not in c.secret_env:
        ctx.add(PROVIDERS, ploc(name, "env_var"),
                f"the container does not receive {server_var}: the server checks nothing",
                f"list {server_var} in container.secret_env", warning=True)


def _vllm_rules(name: str, p: models.Provider, c: models.Container, ctx: Findings) -> None:
    for i, arg in enumerate(c.args):
        names = [a for a in _values_after(c.args, i)] if arg == "--served-model-name" else []
        if len(names) > 1:
            ctx.add(PROVIDERS, ploc(name, "container", "args", i),
                    f"`--served-model-name` with {len(names)} names: the gateway reaches the model by one",
                    "remove it; the controller sets it to the model name (public names go in exact_matches)")
    if not any(True for _ in flag(c.args, "--model")) and not (c.args and not c.args[0].startswith("-")):
        ctx.add(PROVIDERS, ploc(name, "container", "args"),
                "no `--model` in args: vLLM would load its default model", "add `--model, <hf-id>`",
                warning=True)
    if len(p.models) != 1:
        ctx.add(PROVIDERS, ploc(name, "models"),
                f"a vllm container serves exactly one model; {len(p.models)} are listed",
                "one provider per model: vLLM loads one model per server")
        return
    context = p.models[0].context_length
    for i, value in flag(c.args, "--max-model-len", "--max_model_len"):
        if context is not None and value != str(context):
            ctx.add(PROVIDERS, ploc(name, "container", "args", i),
                    f"`--max-model-len {value}` contradicts the model's context_length ({context})",
                    "make them equal: LiteLLM would send prompts the server refuses, or waste context")


def _values_after(args: list[str], i: int) -> list[str]:
    """The values after the flag at `i`, up to the next flag."""
    values = []
    for arg in args[i + 1:]:
        if arg.startswith("-"):
            break
        values.append(arg)
    return values


def _listen_rules(name: str, p: models.Provider, c: models.Container, host: str, port: int, ctx: Findings) -> None:
    """Flags and env that set what the controller derives from the spec must agree with it."""
    want = {"--host": host, "--port": str(port)}
    if p.type == "vllm" and len(p.models) == 1:
        want["--served-model-name"] = p.models[0].name
    if p.type == "vllm" and p.gpu_memory_utilization is not None:
        want["--gpu-memory-utilization"] = str(p.gpu_memory_utilization)
    source = {"--host": "base_url", "--port": "base_url", "--served-model-name": "the model name",
              "--gpu-memory-utilization": "gpu_memory_utilization"}
    for option, expected in want.items() if p.type in ("vllm", "llama_cpp") else ():
        for i, value in flag(c.args, option):
            if value != expected and not (option == "--gpu-memory-utilization" and _same_float(value, expected)):
                ctx.add(PROVIDERS, ploc(name, "container", "args", i),
                        f"`{option} {value}` contradicts the spec, which says {expected}",
                        f"remove `{option}` from args; the controller sets it from {source[option]}")
    env_want = {"OLLAMA_HOST": f"{host}:{port}"} if p.type == "ollama" else (
        {"LLAMA_ARG_HOST": host, "LLAMA_ARG_PORT": str(port)} if p.type == "llama_cpp" else {})
    for key, expected in env_want.items():
        value = c.env.get(key)
        if value is not None and value.removeprefix("http://") != expected:
            ctx.add(PROVIDERS, ploc(name, "container", "env", key),
                    f"`{key}={value}` contradicts base_url ({expected})",
                    f"remove {key}; the controller sets it from base_url")


def _same_float(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _is_address(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- rule 2: references


def _references(spec: models.Spec, cat: catalog_mod.Catalog, ctx: Findings) -> None:
    mm = spec.mappings
    for public, entry in mm.exact_matches.items():
        _provider_model_ref(spec, cat, ("exact_matches", public), entry.provider, entry.backend_model,
                            "backend_model", ctx)
    for public, group in mm.load_balancing.items():
        seen: set[tuple[str, str | None]] = set()
        for i, target in enumerate(group.providers):
            _provider_model_ref(spec, cat, ("load_balancing", public, "providers", i),
                                target.provider, target.model, "model", ctx)
            p = spec.providers.providers.get(target.provider)
            route = (target.provider, target.model or (catalog_mod.default_model(p) if p else None))
            if route in seen:
                ctx.add(MAPPINGS, ("load_balancing", public, "providers", i),
                        f"`{target.provider}` is listed twice in this group", "merge the two entries (add their weights)")
            seen.add(route)
        weighted = [t.weight is not None for t in group.providers]
        if any(weighted) and not all(weighted):
            ctx.add(MAPPINGS, ("load_balancing", public),
                    "some targets have a weight and some do not: LiteLLM gives the unweighted ones no traffic",
                    "give every target a weight, or none (an even split)")
    # Names a broken mapping declares are reported once, at the mapping, not at every use.
    declared = set(mm.exact_matches) | set(mm.load_balancing)
    for key, chain in mm.fallback_chains.items():
        if key != "default" and not cat.knows(key) and key not in mm.capabilities and key not in declared:
            ctx.add(MAPPINGS, ("fallback_chains", key), *_unknown_name(spec, cat, key))
        for i, name in enumerate(chain.chain):
            if not cat.knows(name) and name not in mm.capabilities and name not in declared:
                ctx.add(MAPPINGS, ("fallback_chains", key, "chain", i), *_unknown_name(spec, cat, name))
    for cap, entry in mm.capabilities.items():
        for i, name in enumerate(entry.preferred_models):
            if not cat.knows(name) and name not in declared:
                ctx.add(MAPPINGS, ("capabilities", cap, "preferred_models", i),
                        *_unknown_name(spec, cat, name, aliases_allowed=False))


def _provider_model_ref(spec: models.Spec, cat: catalog_mod.Catalog, loc: tuple[Any, ...], provider: str,
                        model: str | None, model_key: str, ctx: Findings) -> None:
    providers = spec.providers.providers
    p = providers.get(provider)
    if p is None:
        owners = sorted({d.provider for d in cat.public.get(provider, [])})
        close = difflib.get_close_matches(provider, list(providers), n=1)
        hint = (f"`{provider}` is a public model name; its provider is `{owners[0]}`" if owners
                else f"did you mean `{close[0]}`?" if close else "providers: " + ", ".join(sorted(providers)))
        ctx.add(MAPPINGS, (*loc, "provider"), f"provider `{provider}` does not exist", hint)
        return
    names = [m.name for m in p.models]
    if model is None:
        if len(names) != 1:
            ctx.add(MAPPINGS, loc, f"provider `{provider}` has {len(names)} models; say which one",
                    f"add `{model_key}:` with one of: {', '.join(names) or '(none)'}")
    elif model not in names:
        ctx.add(MAPPINGS, (*loc, model_key), f"`{model}` is not a model of provider `{provider}`",
                f"its models are: {', '.join(names) or '(none)'}")


def _collisions(spec: models.Spec, cat: catalog_mod.Catalog, ctx: Findings) -> None:
    """One public name, one meaning: two providers' own names, or a mapping over a model name."""
    lb = spec.mappings.load_balancing
    for public, deps in cat.public.items():
        sources = {d.origin[1][:2] for d in deps}
        if public in lb or len(sources) < 2:
            continue
        first, *others = sorted(deps, key=lambda d: (d.origin[0] != "model-mappings.yaml", d.origin))
        for dep in others:
            where = f"{first.provider} ({first.model})"
            ctx.add(dep.origin[0], dep.origin[1],
                    f"public model name `{public}` is also served by {where}",
                    "give one of them another public name in exact_matches, or serve both "
                    "under one name with load_balancing")
    for public in lb:
        for dep in cat.public.get(public, []):
            if dep.origin[1][:1] != ("load_balancing",):
                ctx.add(MAPPINGS, ("load_balancing", public),
                        f"`{public}` is already a public model name (of provider `{dep.provider}`)",
                        "pick another name for the load-balanced group")
                break
    ids: dict[str, catalog_mod.Deployment] = {}
    for dep in (d for deps in cat.public.values() for d in deps):
        first = ids.get(dep.id)
        # the same route twice is reported as a duplicate model or target; this is two routes
        if first is not None and (first.provider, first.model, first.public) != (dep.provider, dep.model, dep.public):
            ctx.add(dep.origin[0], dep.origin[1], f"two deployments would share the id `{dep.id}`",
                    "avoid `@` in model and public names")
        ids.setdefault(dep.id, dep)
    for cap in spec.mappings.capabilities:
        if cat.knows(cap):
            ctx.add(MAPPINGS, ("capabilities", cap),
                    f"capability `{cap}` has the same name as a public model", "rename the capability")


# --------------------------------------------------------------------------- rules 3 and 4


@dataclass(frozen=True)
class _Bound:
    file: str
    loc: tuple[Any, ...]
    who: str
    host: str | None  # container.host; None: runs on every host


def _same_host(a: _Bound, b: _Bound) -> bool:
    return a.host is None or b.host is None or a.host == b.host


def _ports(spec: models.Spec, cat: catalog_mod.Catalog, ctx: Findings) -> None:
    bound: dict[int, list[_Bound]] = {}
    for name, p, c in containers(spec):
        if p.status == "active" and p.base_url and p.type in models.LOCAL_TYPES:
            bound.setdefault(models.address(p.base_url)[1], []).append(
                _Bound(PROVIDERS, ploc(name, "base_url"), name, c.host))
    gw = spec.stack.gateway
    bound.setdefault(models.address(gw.base_url)[1], []).append(
        _Bound(STACK, ("gateway", "base_url"), "gateway", None))
    if spec.stack.cache is not None:
        port = models.address(spec.stack.cache.base_url)[1]
        bound.setdefault(port, []).append(_Bound(STACK, ("cache", "base_url"), "cache", None))
    for name, p in spec.providers.providers.items():
        if p.container is None and p.status == "active" and p.base_url:
            host, port = models.address(p.base_url)
            owner = next((b.who for b in bound.get(port, []) if _is_loopback(host)), None)
            if owner is not None:
                ctx.add(PROVIDERS, ploc(name, "base_url"),
                        f"`{owner}` listens on port {port} of this host, so this external server cannot",
                        "point base_url at the server's real address and port", subject=name)
    _several_hosts(spec, ctx)
    for port, users in sorted(bound.items()):
        for i, later in enumerate(users):
            clash = next((u for u in users[:i] if _same_host(u, later)), None)
            if clash is not None:
                anywhere = [b.who for b in (clash, later) if b.host is None]
                ctx.add(later.file, later.loc, f"port {port} is also bound by `{clash.who}`",
                        "every active container on a host needs its own port"
                        + (f" (`{anywhere[0]}` has no `host:`, so it runs on every host)"
                           if anywhere and (clash.host or later.host) else ""), subject=later.who)


@dataclass(frozen=True)
class _GpuUser:
    order: int               # position in providers.yaml: the later of two clashing users is reported
    name: str
    devices: frozenset[str]  # {"*"} for `gpus: all`
    share: float             # gpu_memory_utilization, vLLM's default 0.9 when unset
    bound: _Bound
    vllm: bool


def _gpu_users(spec: models.Spec) -> list[_GpuUser]:
    users = []
    for name, p, c in containers(spec):
        if p.status == "active" and c.gpus is not None:
            share = p.gpu_memory_utilization if p.gpu_memory_utilization is not None else (
                0.9 if p.type == "vllm" else 0.0)
            users.append(_GpuUser(len(users), name, frozenset({"*"} if c.gpus == "all" else c.gpus), share,
                                  _Bound(PROVIDERS, ploc(name, "container", "gpus"), name, c.host), p.type == "vllm"))
    return users


def _several_hosts(spec: models.Spec, ctx: Findings) -> None:
    """With containers on several hosts, one gateway reaches them over the network: a loopback
    base_url would send it to its own host's port instead."""
    hosts = sorted({c.host for _, p, c in containers(spec) if c.host and p.status == "active"})
    if len(hosts) < 2:
        return
    for name, p, c in containers(spec):
        if p.status == "active" and c.host and p.base_url and _is_loopback(models.address(p.base_url)[0]):
            ctx.add(PROVIDERS, ploc(name, "base_url"),
                    f"containers run on several hosts ({', '.join(hosts)}); the gateway cannot reach `{name}` "
                    f"on {c.host} at a loopback address", f"use the address of {c.host} in base_url", subject=name)


def _gpus(spec: models.Spec, cat: catalog_mod.Catalog, ctx: Findings) -> None:
    """One active vLLM per GPU per host; memory fractions per GPU per host add up to at most 1.0.
    Users are indexed by device, so a thousand providers cost no more than a few."""
    users = _gpu_users(spec)
    by_device: dict[str, list[_GpuUser]] = {}
    for u in users:
        for d in u.devices:
            by_device.setdefault(d, []).append(u)
    everywhere = by_device.get("*", [])
    refused: set[str] = set()  # a second vLLM on a GPU: one error, not also an over-commit
    for i, u in enumerate(users):
        if not u.vllm:
            continue
        earlier = users[:i] if "*" in u.devices else [
            o for d in sorted(u.devices) for o in by_device.get(d, []) + everywhere if o.order < i]
        clash = next((o for o in earlier if o.vllm and _same_host(u.bound, o.bound)), None)
        if clash is not None:
            refused.add(u.name)
            gpu = ", ".join(sorted(u.devices & clash.devices))
            ctx.add(PROVIDERS, u.bound.loc,
                    f"{f'GPU {gpu} is' if gpu else 'the GPUs are'} already held by active vllm provider `{clash.name}`",
                    f"only one vllm runs per GPU; set `status: disabled` on `{u.name}` or `{clash.name}`",
                    subject=u.name)
    hosts = sorted({u.bound.host for u in users if u.bound.host is not None}) or [None]
    devices = sorted(d for d in by_device if d != "*") or (["*"] if everywhere else [])
    for host in hosts:
        for gpu in devices:
            sharing = by_device.get(gpu, []) + (everywhere if gpu != "*" else [])
            _gpu_sum(gpu, [(u.name, u.share, u.bound) for u in sorted(sharing, key=lambda u: u.order)
                           if u.share > 0 and u.bound.host in (None, host) and u.name not in refused], ctx)


def _gpu_sum(gpu: str, users: list[tuple[str, float, _Bound]], ctx: Findings) -> None:
    """The memory fractions of everything on one GPU of one host add up to at most 1.0."""
    total = round(sum(s for _, s, _ in users), 6)
    if total > 1.0:
        name, _, bound = users[-1]
        parts = " + ".join(f"{n} {s:g}" for n, s, _ in users)
        ctx.add(PROVIDERS, bound.loc,
                f"{'all GPUs are' if gpu == '*' else f'GPU {gpu} is'} over-committed: "
                f"gpu_memory_utilization {parts} = {total:g} > 1.0",
                "lower gpu_memory_utilization (vLLM defaults to 0.9) or move a provider to another GPU",
                subject=name)


# --------------------------------------------------------------------------- rule 7: warnings


def _warnings(spec: models.Spec, cat: catalog_mod.Catalog, ctx: Findings) -> None:
    _image_warnings(spec, ctx)
    _chain_warnings(spec, cat, ctx)
    _dropped_warnings(spec, cat, ctx)


def _image_warnings(spec: models.Spec, ctx: Findings) -> None:
    images = [(PROVIDERS, ploc(n, "container", "image"), c.image) for n, p, c in containers(spec)
              if p.status == "active"]
    images.append((STACK, ("gateway", "image"), spec.stack.gateway.image))
    if spec.stack.cache is not None:
        images.append((STACK, ("cache", "image"), spec.stack.cache.image))
    for file, loc, image in images:
        if "@sha256:" in image:
            continue
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if tag == "" or "latest" in tag or tag in MOVING_TAGS:
            ctx.add(file, loc, f"image `{image}` is {'untagged' if not tag else f'on the moving tag `{tag}`'}; "
                    "what runs would change without a commit",
                    "pin a version tag or a digest", warning=True)


def _chain_warnings(spec: models.Spec, cat: catalog_mod.Catalog, ctx: Findings) -> None:
    limit = spec.stack.gateway.router_settings.get("max_fallbacks", MAX_FALLBACKS)
    limit = limit if isinstance(limit, int) and not isinstance(limit, bool) else MAX_FALLBACKS
    for key, entry in spec.mappings.fallback_chains.items():
        for i, name in enumerate(entry.chain):
            if name == key or name in entry.chain[:i]:
                ctx.add(MAPPINGS, ("fallback_chains", key, "chain", i),
                        f"`{name}` is {'the model itself' if name == key else 'already in the chain'}; it is skipped",
                        "remove it", warning=True)
        if len(entry.chain) > limit:
            ctx.add(MAPPINGS, ("fallback_chains", key, "chain"),
                    f"chain has {len(entry.chain)} models; LiteLLM tries at most {limit} (max_fallbacks)",
                    f"shorten it; the models past number {limit} are never tried", warning=True)
    routing = catalog_mod.routing(spec, cat)
    for cap in spec.mappings.capabilities:
        chain = routing.fallbacks.get(cap, [])
        if len(chain) > limit and cap not in spec.mappings.fallback_chains:
            ctx.add(MAPPINGS, ("capabilities", cap),
                    f"the alias's fallbacks (its other preferred models, then its target's chain) are "
                    f"{len(chain)}; LiteLLM tries at most {limit} (max_fallbacks)",
                    f"give `{cap}` a shorter chain of its own in fallback_chains", warning=True)
    for file, loc, message in routing.dropped:
        ctx.add(file, loc, message, "enable the provider, or remove the reference", warning=True)


def _dropped_warnings(spec: models.Spec, cat: catalog_mod.Catalog, ctx: Findings) -> None:
    """Mappings that point at a disabled provider: kept in git, left out of the config."""
    for public in spec.mappings.exact_matches:
        if public in cat.inactive:
            ctx.add(MAPPINGS, ("exact_matches", public), f"mapping dropped: {cat.inactive[public]}",
                    "enable the provider, or remove the mapping", warning=True)
    for public, group in spec.mappings.load_balancing.items():
        for i, target in enumerate(group.providers):
            p = spec.providers.providers.get(target.provider)
            if p is not None and p.status != "active":
                ctx.add(MAPPINGS, ("load_balancing", public, "providers", i),
                        f"target dropped: provider `{target.provider}` is {p.status}",
                        "enable the provider, or remove the target", warning=True)


__all__ = ["check", "image_allowed"]
