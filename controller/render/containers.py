"""Spec -> one ContainerSpec per active local provider, the gateway and the cache.

Fourth step of the pipeline (Spec -> Desired), beside the LiteLLM config. A ContainerSpec
is everything the Docker adapter needs to create the container, plus a spec hash over
everything that should restart it: image, command, env names and values, secret values
(only as fingerprints the caller computed, never the values), mounts, GPUs, and for the
gateway the digest of the rendered config. Informational keys never reach it, and what only
the controller uses (health probe, startup timeout, placement) is left out of the hash, so
editing those restarts nothing. Pure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from controller.spec import models

GATEWAY_CONFIG_DIR = "/etc/llm-gitops"  # where the gateway sees the directory the controller swaps into
GATEWAY_CONFIG_FILE = f"{GATEWAY_CONFIG_DIR}/config.yaml"
UNSET = "unset"  # the fingerprint of a secret that the controller's environment lacks


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Mount(Frozen):
    """`bind`: a host path; `volume`: a Docker named volume; `gateway-config`: the directory
    of the rendered LiteLLM config, which the adapter maps to `<state-dir>/gateway`;
    `gateway-staging`: the directory of the staged, not yet live, config (the canary's)."""

    kind: Literal["bind", "volume", "gateway-config", "gateway-staging"]
    source: str
    target: str
    read_only: bool = False


class Health(Frozen):
    kind: Literal["http", "redis"]
    url: str


class ContainerSpec(Frozen):
    name: str
    component: Literal["provider", "gateway", "cache", "canary"]
    provider: str | None = None
    provider_type: str | None = None  # vllm | ollama | llama_cpp, for providers
    image: str
    command: tuple[str, ...] = ()
    env: dict[str, str] = {}
    secret_env: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()
    gpus: Literal["all"] | tuple[str, ...] | None = None
    ipc: Literal["host"] | None = None
    shm_size: str | None = None
    privileged: bool = False
    port: int
    listen_host: str = "127.0.0.1"  # the address it binds (host network); already in command or env
    health: Health
    startup_timeout_s: int
    placement: str | None = None  # only the controller started with --host-name <placement> runs it
    config_digest: str | None = None  # gateway only: sha256 of the rendered LiteLLM config
    spec_hash: str = ""

    @property
    def key(self) -> str:
        """What identifies the container across commits: component and provider name."""
        return self.provider or self.component


# What the controller itself uses, never the container: changing it must not restart anything
# (a vLLM restart is a cold start of minutes).
NOT_HASHED = frozenset({"spec_hash", "health", "startup_timeout_s", "placement", "listen_host"})


def spec_hash(spec: ContainerSpec, secret_fingerprints: Mapping[str, str]) -> str:
    """sha256 over the canonical JSON of what the container runs with (not how the controller
    probes or places it), plus a fingerprint per secret it receives.

    Fingerprints are computed at the edge (an HMAC of the value with a key the controller
    keeps), so a rotated secret restarts its containers while the value never enters here.
    """
    body = spec.model_dump(mode="json", exclude=set(NOT_HASHED))
    body["secrets"] = {name: secret_fingerprints.get(name, UNSET) for name in spec.secret_env}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _mount(volume: str) -> Mount:
    source, target, *mode = volume.split(":")
    kind: Literal["bind", "volume"] = "bind" if source.startswith("/") else "volume"
    return Mount(kind=kind, source=source, target=target, read_only=mode == ["ro"])


MULTI_VALUE_FLAGS = {"--served-model-name"}  # vLLM takes several names after it


def _strip_flags(args: list[str], flags: set[str]) -> list[str]:
    """Drop `--flag value` / `--flag=value` that the controller sets itself (rules made sure
    any such value agrees with the spec), so they are not passed twice."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg in flags:
            if arg in MULTI_VALUE_FLAGS:
                while i < len(args) and not args[i].startswith("-"):
                    i += 1
            else:
                i += 1
        elif not any(arg.startswith(f + "=") for f in flags):
            out.append(arg)
    return out


def provider_container(stack: str, name: str, p: models.Provider, c: models.Container) -> ContainerSpec:
    assert p.base_url is not None  # rules require it for every container
    host, port = models.address(p.base_url)
    args, env = list(c.args), dict(c.env)
    if p.type in ("vllm", "llama_cpp"):
        owned = {"--host": host, "--port": str(port)}
        if p.type == "vllm":
            owned["--served-model-name"] = p.models[0].name
            if p.gpu_memory_utilization is not None:
                owned["--gpu-memory-utilization"] = f"{p.gpu_memory_utilization:g}"
        args = _strip_flags(args, set(owned)) + [x for kv in owned.items() for x in kv]
    else:  # ollama listens where OLLAMA_HOST says
        env["OLLAMA_HOST"] = f"{host}:{port}"
    health = p.health_endpoint or models.DEFAULT_HEALTH_ENDPOINT[p.type]
    return ContainerSpec(
        name=f"{stack}-{name}", component="provider", provider=name, provider_type=p.type, image=c.image,
        command=tuple(args), env=dict(sorted(env.items())), secret_env=tuple(sorted(set(c.secret_env))),
        mounts=tuple(_mount(v) for v in c.volumes),
        gpus=c.gpus if c.gpus in (None, "all") else tuple(c.gpus),  # type: ignore[arg-type]
        ipc=c.ipc, shm_size=c.shm_size, privileged=c.privileged, port=port, listen_host=host,
        health=Health(kind="http", url=f"http://{models.url_host(models.reachable_host(host))}:{port}{health}"),
        startup_timeout_s=c.startup_timeout_s or models.DEFAULT_STARTUP_TIMEOUT_S[p.type],
        placement=c.host,
    )


def gateway_container(spec: models.Spec, config_digest: str) -> ContainerSpec:
    gw = spec.stack.gateway
    host, port = models.address(gw.base_url)
    # The gateway resolves `os.environ/NAME` for every provider key, so it receives them all.
    keys = {p.env_var for p in spec.providers.providers.values() if p.status == "active" and p.env_var}
    keys |= {p.api_key.removeprefix("os.environ/") for p in spec.providers.providers.values()
             if p.status == "active" and p.api_key}
    return ContainerSpec(
        name=f"{spec.stack.name}-gateway", component="gateway", image=gw.image,
        command=("--config", GATEWAY_CONFIG_FILE, "--host", host, "--port", str(port)),
        env=dict(sorted(gw.env.items())),
        secret_env=tuple(sorted({gw.master_key_env, *gw.secret_env, *keys})),
        mounts=(Mount(kind="gateway-config", source="gateway", target=GATEWAY_CONFIG_DIR, read_only=True),),
        port=port, listen_host=host,
        health=Health(kind="http", url=f"http://{models.url_host(models.reachable_host(host))}:{port}/health/liveliness"),
        startup_timeout_s=gw.startup_timeout_s, config_digest=config_digest,
    )


CANARY_HOST = "127.0.0.1"   # a canary is never reachable from elsewhere, whatever the gateway binds


def canary_name(stack: str, pass_id: str) -> str:
    """`<stack>-gateway_canary_<pass>`: `_` is not allowed in stack or provider names, so a
    canary's name never collides with a stack member's, and each pass has its own."""
    return f"{stack}-gateway_canary_{pass_id[:12]}"


def canary_container(gateway: ContainerSpec, *, stack: str, port: int, pass_id: str) -> ContainerSpec:
    """The gateway as it would run the staged config: same image, env and secrets, the
    staging directory mounted where the live one would be, listening on `port` of 127.0.0.1
    instead of the gateway's address. Its health URL follows, its timeout is the gateway's."""
    command = list(gateway.command)
    for flag, value in (("--host", CANARY_HOST), ("--port", str(port))):
        if flag in command and command.index(flag) + 1 < len(command):
            command[command.index(flag) + 1] = value
        else:
            command += [flag, value]
    mounts = tuple(m.model_copy(update={"kind": "gateway-staging"}) if m.kind == "gateway-config" else m
                   for m in gateway.mounts)
    path = gateway.health.url.removeprefix(base_url(gateway)) or "/health/liveliness"
    return gateway.model_copy(update={
        "name": canary_name(stack, pass_id), "component": "canary", "command": tuple(command), "mounts": mounts,
        "port": port, "listen_host": CANARY_HOST, "health": Health(kind="http", url=f"http://{CANARY_HOST}:{port}{path}"),
        "spec_hash": "", "config_digest": gateway.config_digest})


def base_url(spec: ContainerSpec) -> str:
    """`http://host:port` of an HTTP container, as its health URL reaches it."""
    rest = spec.health.url.split("://", 1)
    return f"{rest[0]}://{rest[-1].split('/', 1)[0]}"


def cache_container(spec: models.Spec) -> ContainerSpec | None:
    cache = spec.stack.cache
    if cache is None:
        return None
    host, port = models.address(cache.base_url)
    # A response cache, not a database: no snapshots, so a restart starts empty and fast.
    command = ("redis-server", "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no")
    return ContainerSpec(
        name=f"{spec.stack.name}-cache", component="cache", image=cache.image, command=command,
        port=port, listen_host=host, health=Health(kind="redis", url=f"redis://{models.url_host(models.reachable_host(host))}:{port}"),
        startup_timeout_s=cache.startup_timeout_s,
    )


def with_hash(spec: ContainerSpec, secret_fingerprints: Mapping[str, str]) -> ContainerSpec:
    return spec.model_copy(update={"spec_hash": spec_hash(spec, secret_fingerprints)})


def as_dict(spec: ContainerSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json")
