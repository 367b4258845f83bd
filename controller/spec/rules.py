"""The rules of SPEC.md "Rules checked before anything runs", over a parsed Spec.

Third step of the pipeline (after YAML and shapes): references, ports, GPUs, secrets,
policy, the features LiteLLM cannot do, and the warnings. Each rule reports every
violation it finds, located through the raw YAML positions. Pure: no I/O.
"""

from __future__ import annotations

import difflib
import ipaddress
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from controller.errors import Problem, Severity
from controller.spec import catalog as catalog_mod
from controller.spec import litellm_keys, models, yamlpos
from controller.spec.load import MAPPINGS, PROVIDERS, STACK, subject_of

SECRET_NAME = re.compile(r"(_KEY|_TOKEN|_SECRET)$|PASSWORD|^API_?KEY$", re.IGNORECASE)
SECRET_VALUE = re.compile(r"^(sk-|sk_|ghp_|hf_|xox[bp]-|AKIA)[A-Za-z0-9_\-]{6,}")
ENV_REF = re.compile(r"^os\.environ/[A-Za-z_][A-Za-z0-9_]*$")
ALWAYS_REFUSED_MOUNTS = ("/", "/var/run/docker.sock", "/run/docker.sock", "/var/run", "/run")
NAMED_VOLUME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_FALLBACKS = 5  # LiteLLM's ROUTER_MAX_FALLBACKS
MOVING_TAGS = {"main", "stable", "nightly", "dev", "edge"}
CONTROLLER_ROUTER_KEYS = {
    "model_list": "the controller writes it from providers.yaml and model-mappings.yaml",
    "fallbacks": "use fallback_chains in model-mappings.yaml",
    "default_fallbacks": "use the `default` entry of fallback_chains in model-mappings.yaml",
    "model_group_alias": "use capabilities in model-mappings.yaml",
    "redis_host": "the controller wires the cache from stack.yaml `cache:`",
    "redis_port": "the controller wires the cache from stack.yaml `cache:`",
    "redis_url": "the controller wires the cache from stack.yaml `cache:`",
    "redis_password": "the controller wires the cache from stack.yaml `cache:`",
}
CONTROLLER_LITELLM_KEYS = {
    "cache": "the controller turns the cache on when stack.yaml has `cache:`",
    "cache_params": "the controller writes it from stack.yaml `cache:`",
    "master_key": "the master key is read from the variable named by gateway.master_key_env",
    "model_list": "the controller writes it from providers.yaml and model-mappings.yaml",
    "fallbacks": "use fallback_chains in model-mappings.yaml",
    "default_fallbacks": "use the `default` entry of fallback_chains in model-mappings.yaml",
    "model_group_alias": "use capabilities in model-mappings.yaml",
}
# Router keys that belong to LiteLLM's general_settings, which the controller does not expose.
GENERAL_SETTINGS_KEYS = {"health_check_interval", "health_check_concurrency", "background_health_checks"}
# Fallback maps users may set themselves; their targets must still be public names.
TARGET_MAPS = ("context_window_fallbacks", "content_policy_fallbacks")


@dataclass
class _Ctx:
    raw: Mapping[str, Any]
    problems: list[Problem] = field(default_factory=list)

    def add(self, file: str, loc: tuple[Any, ...], message: str, hint: str = "",
            *, warning: bool = False, subject: str | None = None) -> None:
        line, col = yamlpos.position(self.raw.get(file), loc)
        self.problems.append(Problem(
            file, line, col, subject or subject_of(file, loc), message, hint,
            Severity.WARNING if warning else Severity.ERROR))


def check(spec: models.Spec, raw: Mapping[str, Any]) -> list[Problem]:
    """Every rule over `spec`; `raw` is the positioned YAML data used to locate findings."""
    ctx = _Ctx(raw)
    cat = catalog_mod.build(spec)
    for rule in (_providers, _references, _collisions, _ports, _gpus, _secrets, _policy,
                 _litellm_features, _warnings):
        rule(spec, cat, ctx)
    return sorted(set(ctx.problems))  # a rule checked per host may find the same thing twice


# --------------------------------------------------------------------------- helpers


def _ploc(name: str, *rest: Any) -> tuple[Any, ...]:
    return ("providers", name, *rest)


def _models_hint(spec: models.Spec, provider: str) -> str:
    names = [m.name for m in spec.providers.providers[provider].models]
    return f"`{provider}` is a provider; its models are: {', '.join(names) or '(none)'}"


def _unknown_name(spec: models.Spec, cat: catalog_mod.Catalog, name: str) -> tuple[str, str]:
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
    known = sorted(set(cat.public) | set(cat.inactive) | set(spec.mappings.capabilities))
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean `{close[0]}`?" if close else "public names: " + ", ".join(known)
    return f"`{name}` is not a public model name", hint


def _listen(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    try:
        port = parts.port or default
    except ValueError:
        port = default
    return parts.hostname or "", port


def _flag(args: list[str], *names: str) -> Iterator[tuple[int, str]]:
    """(index, value) of each `--flag value` or `--flag=value` in args."""
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                yield i + 1, args[i + 1]
            elif arg.startswith(name + "="):
                yield i, arg.split("=", 1)[1]


def _containers(spec: models.Spec) -> Iterator[tuple[str, models.Provider, models.Container]]:
    for name, provider in spec.providers.providers.items():
        if provider.container is not None:
            yield name, provider, provider.container


# --------------------------------------------------------------------------- rule: providers


def _providers(spec: models.Spec, cat: catalog_mod.Catalog, ctx: _Ctx) -> None:
    """Per-provider consistency: base_url, container vs type, args that contradict base_url."""
    for name, p in spec.providers.providers.items():
        if p.base_url is None and p.type not in ("openai", "anthropic"):
            ctx.add(PROVIDERS, _ploc(name), "`base_url` is required for type " + p.type,
                    "add e.g. `base_url: http://127.0.0.1:8000`", subject=name)
        if p.status == "active" and not p.models:
            ctx.add(PROVIDERS, _ploc(name), "active provider has no models; it serves nothing",
                    "list its models under `models:`", warning=True, subject=name)
        seen: set[str] = set()
        for i, model in enumerate(p.models):
            if model.name in seen:
                ctx.add(PROVIDERS, _ploc(name, "models", i), f"model `{model.name}` is listed twice",
                        "remove the second entry")
            seen.add(model.name)
            if model.options is not None and p.type != "ollama":
                ctx.add(PROVIDERS, _ploc(name, "models", i, "options"),
                        "`options` is only for ollama providers (sent as Ollama's options)",
                        "remove it, or pass the server's own flags in container.args")
        if p.container is not None:
            _container_rules(name, p, p.container, ctx)


def _container_rules(name: str, p: models.Provider, c: models.Container, ctx: _Ctx) -> None:
    if p.type not in models.LOCAL_TYPES:
        ctx.add(PROVIDERS, _ploc(name, "container"),
                f"`container:` is for vllm, ollama and llama_cpp providers, not {p.type}",
                "run this server yourself and point base_url at it, or change `type`")
        return
    if p.base_url is None:
        return
    host, port = _listen(p.base_url)
    if p.base_url.startswith("https://"):
        ctx.add(PROVIDERS, _ploc(name, "base_url"), "a container the controller runs serves plain http",
                f"write http://{host}:{port}")
    if p.env_var and p.env_var not in c.secret_env:
        ctx.add(PROVIDERS, _ploc(name, "env_var"),
                f"the gateway sends the key in {p.env_var}, but the container does not receive it, "
                "so the server does not check it", f"add {p.env_var} to container.secret_env "
                "(vLLM reads VLLM_API_KEY, llama.cpp LLAMA_API_KEY)", warning=True)
    if p.type == "vllm" and not any(True for _ in _flag(c.args, "--model")) and not (
            c.args and not c.args[0].startswith("-")):
        ctx.add(PROVIDERS, _ploc(name, "container", "args"),
                "no `--model` in args: vLLM would load its default model", "add `--model, <hf-id>`",
                warning=True)
    if not _is_address(host):
        ctx.add(PROVIDERS, _ploc(name, "base_url"),
                f"a container's base_url must use an IP address or localhost, not `{host}`",
                "containers run with host networking; use e.g. http://127.0.0.1:"
                f"{port}")
    if c.ipc and c.shm_size:
        ctx.add(PROVIDERS, _ploc(name, "container", "shm_size"),
                "set either `ipc: host` or `shm_size`, not both", "vLLM needs one of them")
    if p.type == "vllm" and len(p.models) != 1:
        ctx.add(PROVIDERS, _ploc(name, "models"),
                f"a vllm container serves exactly one model; {len(p.models)} are listed",
                "one provider per model: vLLM loads one model per server")
    want = {"--host": host, "--port": str(port)}
    if p.type == "vllm" and len(p.models) == 1:
        want["--served-model-name"] = p.models[0].name
    if p.type == "vllm" and p.gpu_memory_utilization is not None:
        want["--gpu-memory-utilization"] = str(p.gpu_memory_utilization)
    if p.type in ("vllm", "llama_cpp"):
        for flag, expected in want.items():
            for i, value in _flag(c.args, flag):
                if value != expected and not (flag == "--gpu-memory-utilization" and _same_float(value, expected)):
                    ctx.add(PROVIDERS, _ploc(name, "container", "args", i),
                            f"`{flag} {value}` contradicts the spec, which says {expected}",
                            f"remove `{flag}` from args; the controller sets it from "
                            + ("base_url" if flag in ("--host", "--port") else
                               "the model name" if flag == "--served-model-name" else "gpu_memory_utilization"))
    env_want = {"OLLAMA_HOST": f"{host}:{port}"} if p.type == "ollama" else (
        {"LLAMA_ARG_HOST": host, "LLAMA_ARG_PORT": str(port)} if p.type == "llama_cpp" else {})
    for key, expected in env_want.items():
        value = c.env.get(key)
        if value is not None and value.removeprefix("http://") != expected:
            ctx.add(PROVIDERS, _ploc(name, "container", "env", key),
                    f"`{key}={value}` contradicts base_url ({expected})",
                    f"remove {key}; the controller sets it from base_url")


def _same_float(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
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


def _references(spec: models.Spec, cat: catalog_mod.Catalog, ctx: _Ctx) -> None:
    providers = spec.providers.providers
    mm = spec.mappings
    for public, entry in mm.exact_matches.items():
        _provider_model_ref(spec, ("exact_matches", public), entry.provider, entry.backend_model,
                            "backend_model", ctx)
    for public, group in mm.load_balancing.items():
        for i, target in enumerate(group.providers):
            _provider_model_ref(spec, ("load_balancing", public, "providers", i),
                                target.provider, target.model, "model", ctx)
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
                ctx.add(MAPPINGS, ("capabilities", cap, "preferred_models", i), *_unknown_name(spec, cat, name))
    del providers


def _provider_model_ref(spec: models.Spec, loc: tuple[Any, ...], provider: str,
                        model: str | None, model_key: str, ctx: _Ctx) -> None:
    providers = spec.providers.providers
    p = providers.get(provider)
    if p is None:
        owners = sorted({d.provider for d in catalog_mod.build(spec).public.get(provider, [])})
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


def _collisions(spec: models.Spec, cat: catalog_mod.Catalog, ctx: _Ctx) -> None:
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


def _ports(spec: models.Spec, cat: catalog_mod.Catalog, ctx: _Ctx) -> None:
    bound: dict[int, list[_Bound]] = {}
    for name, p, c in _containers(spec):
        if p.status == "active" and p.base_url and p.type in models.LOCAL_TYPES:
            bound.setdefault(_listen(p.base_url)[1], []).append(
                _Bound(PROVIDERS, _ploc(name, "base_url"), name, c.host))
    gw = spec.stack.gateway
    bound.setdefault(_listen(gw.base_url)[1], []).append(
        _Bound(STACK, ("gateway", "base_url"), "gateway", None))
    if spec.stack.cache is not None:
        port = int(spec.stack.cache.base_url.rsplit(":", 1)[1])
        bound.setdefault(port, []).append(_Bound(STACK, ("cache", "base_url"), "cache", None))
    for port, users in sorted(bound.items()):
        for i, later in enumerate(users):
            clash = next((u for u in users[:i] if _same_host(u, later)), None)
            if clash is not None:
                ctx.add(later.file, later.loc, f"port {port} is also bound by `{clash.who}`",
                        "every active container on a host needs its own port", subject=later.who)


def _gpus(spec: models.Spec, cat: catalog_mod.Catalog, ctx: _Ctx) -> None:
    holders: list[tuple[str, set[str], float, _Bound, bool]] = []
    for name, p, c in _containers(spec):
        if p.status != "active" or c.gpus is None:
            continue
        devices = {"*"} if c.gpus == "all" else set(c.gpus)
        share = p.gpu_memory_utilization if p.gpu_memory_utilization is not None else (
            0.9 if p.type == "vllm" else 0.0)  # vLLM's own default is 0.9
        holders.append((name, devices, share, _Bound(PROVIDERS, _ploc(name, "container", "gpus"),
                                                      name, c.host), p.type == "vllm"))
    for i, (name, devices, _, bound, is_vllm) in enumerate(holders):
        if not is_vllm:
            continue
        for other, odev, _, obound, ovllm in holders[:i]:
            shared = devices & odev or ("*" in devices or "*" in odev)
            if ovllm and shared and _same_host(bound, obound):
                gpu = ", ".join(sorted(devices & odev))
                ctx.add(PROVIDERS, bound.loc,
                        f"{f'GPU {gpu} is' if gpu else 'the GPUs are'} already held by active vllm provider `{other}`",
                        f"only one vllm runs per GPU; set `status: disabled` on `{name}` or `{other}`",
                        subject=name)
    ids = sorted({d for _, devs, *_ in holders for d in devs if d != "*"}) or (["*"] if holders else [])
    hosts = sorted({b.host for *_, b, _ in holders if b.host is not None}) or [None]
    for host in hosts:
        for gpu in ids:
            _gpu_sum(gpu, [(n, s, b) for n, devs, s, b, _ in holders
                           if (gpu in devs or "*" in devs) and s > 0 and b.host in (None, host)], ctx)


def _gpu_sum(gpu: str, users: list[tuple[str, float, _Bound]], ctx: _Ctx) -> None:
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


# --------------------------------------------------------------------------- rule 5: secrets


def _secrets(spec: models.Spec, cat: catalog_mod.Catalog, ctx: _Ctx) -> None:
    for name, p in spec.providers.providers.items():
        if p.api_key is not None and not ENV_REF.match(p.api_key):
            ctx.add(PROVIDERS, _ploc(name, "api_key"), "a literal API key must not be in git",
                    "set `env_var: NAME` and give the controller that variable")
        for i, model in enumerate(p.models):
            _literal_secrets(PROVIDERS, _ploc(name, "models", i, "options"), model.options or {}, ctx,
                             "remove it: Ollama options hold no credentials")
        if p.container is None:
            continue
        _env_secrets(PROVIDERS, _ploc(name, "container", "env"), p.container.env, ctx)
        for i, value in _flag(p.container.args, "--api-key", "--api_key", "--hf-token", "--token"):
            ctx.add(PROVIDERS, _ploc(name, "container", "args", i), "a literal secret in args must not be in git",
                    "pass it with secret_env (the server reads e.g. VLLM_API_KEY / LLAMA_API_KEY / HF_TOKEN)")
    gw = spec.stack.gateway
    _env_secrets(STACK, ("gateway", "env"), gw.env, ctx)
    owned = {"router_settings": CONTROLLER_ROUTER_KEYS, "litellm_settings": CONTROLLER_LITELLM_KEYS}
    for section in ("router_settings", "litellm_settings"):
        # keys the controller owns are refused anyway, with their own message
        mine = {k: v for k, v in getattr(gw, section).items() if k not in owned[section]}
        _literal_secrets(STACK, ("gateway", section), mine, ctx,
                         "use `os.environ/NAME` and list NAME in gateway.secret_env")


def _literal_secrets(file: str, loc: tuple[Any, ...], values: Mapping[str, Any], ctx: _Ctx, hint: str) -> None:
    for path, value in _walk(values, loc):
        key = str(path[-1])
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value) and \
                not ENV_REF.match(str(value)) and (
                SECRET_NAME.search(key) and not key.endswith("_env") or SECRET_VALUE.match(str(value))):
            ctx.add(file, path, "a literal secret must not be in git", hint)


def _env_secrets(file: str, loc: tuple[Any, ...], env: Mapping[str, str], ctx: _Ctx) -> None:
    for key, value in env.items():
        if not value:
            continue
        what = (f"`{key}` looks like a secret; its value" if SECRET_NAME.search(key)
                else f"the value of `{key}` looks like a secret; it" if SECRET_VALUE.match(value) else "")
        if what:
            ctx.add(file, (*loc, key), f"{what} must not be in git",
                    f"remove it from env and list `{key}` in secret_env: the controller passes "
                    "it through from its own environment")


def _walk(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, (*path, i))
    else:
        yield path, value


# --------------------------------------------------------------------------- rule 6: policy


def _policy(spec: models.Spec, cat: catalog_mod.Catalog, ctx: _Ctx) -> None:
    policy = spec.stack.policy
    for i, root in enumerate(policy.allowed_mount_roots):
        if posixpath.normpath(root) == "/":
            ctx.add(STACK, ("policy", "allowed_mount_roots", i), "`/` as a mount root would allow any host path",
                    "list the directories that hold models and caches, e.g. /srv, /models, /data")
    for name, p, c in _containers(spec):
        if p.status == "template":
            continue
        for i, volume in enumerate(c.volumes):
            problem = _mount_problem(volume, policy.allowed_mount_roots)
            if problem:
                ctx.add(PROVIDERS, _ploc(name, "container", "volumes", i), *problem)
        if c.privileged and not policy.allow_privileged:
            ctx.add(PROVIDERS, _ploc(name, "container", "privileged"),
                    "privileged containers are refused by policy",
                    "remove `privileged: true`; GPUs are given with `gpus:`, not privileges "
                    "(or set policy.allow_privileged: true in stack.yaml)")
        _image_rule(PROVIDERS, _ploc(name, "container", "image"), c.image, policy, ctx)
    _image_rule(STACK, ("gateway", "image"), spec.stack.gateway.image, policy, ctx)
    if spec.stack.cache is not None:
        _image_rule(STACK, ("cache", "image"), spec.stack.cache.image, policy, ctx)


def _mount_problem(volume: str, roots: list[str]) -> tuple[str, str] | None:
    parts = volume.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
        return (f"`{volume}` is not HOST:CONTAINER[:ro|rw]",
                "write e.g. /srv/hf-cache:/root/.cache/huggingface or /models:/models:ro")
    if len(parts) == 3 and parts[2] not in ("ro", "rw"):
        return f"mount mode `{parts[2]}` is not ro or rw", "use :ro or :rw"
    source = parts[0]
    if NAMED_VOLUME.match(source):
        return None  # a Docker named volume, not a host path
    if not source.startswith("/"):
        return f"host path `{source}` must be absolute", "write it from /"
    path = posixpath.normpath(source)
    if path in ALWAYS_REFUSED_MOUNTS or path.endswith("docker.sock"):
        return (f"mounting `{path}` is refused: it hands the container the host",
                "mount only the model or cache directories the server needs")
    if not any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots if r != "/"):
        return (f"host path `{path}` is outside the allowed mount roots ({', '.join(roots) or 'none'})",
                "move the data under an allowed root, or add one to policy.allowed_mount_roots in stack.yaml")
    return None


def _image_rule(file: str, loc: tuple[Any, ...], image: str, policy: models.Policy, ctx: _Ctx) -> None:
    if policy.allowed_images and not any(image_allowed(image, p) for p in policy.allowed_images):
        ctx.add(file, loc, f"image `{image}` is not allowed by policy",
                "allowed images: " + ", ".join(policy.allowed_images)
                + " (a prefix ending in `/` allows a namespace, any other one repository)")


def _canonical(ref: str) -> str:
    """`redis:7` -> `docker.io/library/redis:7`; `vllm/x` -> `docker.io/vllm/x`, as Docker reads them."""
    first, sep, rest = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return ref
    if not sep:
        return f"docker.io/library/{ref}" if ref else "docker.io/"
    return f"docker.io/{ref}"


def image_allowed(image: str, prefix: str) -> bool:
    """Whether `image` falls under an `allowed_images` entry, matched on name boundaries:
    `vllm/` allows `vllm/vllm-openai:v1` but `vllm` does not allow `vllmevil/x`."""
    img, pre = _canonical(image), _canonical(prefix)
    if pre.endswith(("/", ":", "@")):
        return img.startswith(pre)
    return img == pre or img.startswith((pre + ":", pre + "@"))


# --------------------------------------------------------------------------- features LiteLLM lacks


def _litellm_features(spec: models.Spec, cat: catalog_mod.Catalog, ctx: _Ctx) -> None:
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
    _router_settings(spec, ctx)


def _fallback_targets(spec: models.Spec, loc: tuple[Any, ...], value: Any, ctx: _Ctx) -> None:
    """`[{public: [public, ...]}]`: LiteLLM does not check the names; a typo silently never fires."""
    if value is None:
        return
    cat = catalog_mod.build(spec)
    known = set(cat.public) | set(spec.mappings.capabilities)
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        ctx.add(STACK, loc, "must be a list of `{public-name: [fallback, ...]}`", "see LiteLLM's router settings")
        return
    for i, entry in enumerate(value):
        for source, targets in entry.items():
            names = [source, *(targets if isinstance(targets, list) else [targets])]
            for name in names:
                if name not in known:
                    ctx.add(STACK, (*loc, i), f"`{name}` is not a public model name",
                            "public names: " + ", ".join(sorted(known)))


def _router_settings(spec: models.Spec, ctx: _Ctx) -> None:
    gw = spec.stack.gateway
    for key, value in gw.router_settings.items():
        loc = ("gateway", "router_settings", key)
        if key in GENERAL_SETTINGS_KEYS:
            ctx.add(STACK, loc, f"`{key}` is a LiteLLM general_settings key, not a router setting",
                    "the controller does not set general_settings other than the master key; remove it")
        elif not _known_setting(loc, CONTROLLER_ROUTER_KEYS, litellm_keys.ROUTER_ARGS,
                                "not a LiteLLM router setting", "Router() arguments", ctx):
            continue
        elif key == "routing_strategy" and value not in litellm_keys.ROUTING_STRATEGIES:
            ctx.add(STACK, loc, f"LiteLLM has no routing strategy `{value}`",
                    "LiteLLM's strategies: " + ", ".join(litellm_keys.ROUTING_STRATEGIES)
                    + "; for task-based routing, define capabilities and let clients ask for them")
    for section in ("router_settings", "litellm_settings"):
        for key in TARGET_MAPS:
            _fallback_targets(spec, ("gateway", section, key), getattr(gw, section).get(key), ctx)
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
    for key, source in (("allowed_fails", special.error_based_routing), ("cooldown_time", special.error_based_routing)):
        if source is not None and source.enabled and key in gw.router_settings:
            ctx.add(STACK, ("gateway", "router_settings", key),
                    f"`{key}` is also set by special_cases.error_based_routing in model-mappings.yaml",
                    "keep one of them")
    for key in gw.litellm_settings:
        _known_setting(("gateway", "litellm_settings", key), CONTROLLER_LITELLM_KEYS, litellm_keys.LITELLM_SETTINGS,
                       "not a LiteLLM setting (LiteLLM would silently ignore it)", "litellm_settings", ctx)


def _known_setting(loc: tuple[str, str, str], owned: Mapping[str, str], known: frozenset[str],
                   unknown: str, docs: str, ctx: _Ctx) -> bool:
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


# --------------------------------------------------------------------------- rule 7: warnings


def _warnings(spec: models.Spec, cat: catalog_mod.Catalog, ctx: _Ctx) -> None:
    images = [(PROVIDERS, _ploc(n, "container", "image"), c.image) for n, p, c in _containers(spec)
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
    for key, entry in spec.mappings.fallback_chains.items():
        if len(entry.chain) > MAX_FALLBACKS:
            ctx.add(MAPPINGS, ("fallback_chains", key, "chain"),
                    f"chain has {len(entry.chain)} models; LiteLLM tries at most {MAX_FALLBACKS}",
                    "shorten it; the models past the fifth are never tried", warning=True)
    routing = catalog_mod.routing(spec, cat)
    for cap in spec.mappings.capabilities:
        chain = routing.fallbacks.get(cap, [])
        if len(chain) > MAX_FALLBACKS and cap not in spec.mappings.fallback_chains:
            ctx.add(MAPPINGS, ("capabilities", cap),
                    f"the alias's fallbacks (its other preferred models, then its target's chain) are "
                    f"{len(chain)}; LiteLLM tries at most {MAX_FALLBACKS}",
                    f"give `{cap}` a shorter chain of its own in fallback_chains", warning=True)
    for file, loc, message in routing.dropped:
        ctx.add(file, loc, message, "enable the provider, or remove the reference", warning=True)
    for public, entry in spec.mappings.exact_matches.items():
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
