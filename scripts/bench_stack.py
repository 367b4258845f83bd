"""The 10-container stack that `make bench` runs both ways: as an llm-gitops spec and as the
equivalent docker-compose file.

Shared by scripts/bench_compose.py and scripts/bench_loop.py, and checked by
tests/test_bench.py: the compose file is written the way a user would write it by hand (from
the same table of providers, not from our renderer's output), and the test proves that it
runs the same containers as the spec renders to (images, commands, env, ports, health URLs,
the gateway's config mount). Pure: data in, text out.

Nine stub providers (three each of vLLM, llama.cpp and Ollama; the stub image answers all
three APIs) and one stub standing in for the gateway, which lists its --config's names on
/v1/models. Every container uses the host network and listens on its own 127.0.0.1 port.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import yaml

STUB = "llm-gitops-test/stub:1"
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
CONFIG_DIR = "/etc/llm-gitops"          # where our renderer mounts the gateway's config directory
HEALTH_PATH = {"vllm": "/health", "llama_cpp": "/health", "ollama": "/api/version"}
KINDS = ("vllm", "llama_cpp", "ollama")
# Compose probes each container itself (docker exec) every HEALTH_INTERVAL; 10 stubs probed
# every second would load a 2-core machine for both sides, and the bench polls health from
# outside anyway (compose 1.29's `up -d` does not wait for it).
HEALTH_INTERVAL = "10s"


@dataclass(frozen=True)
class Provider:
    name: str
    kind: str                     # vllm | llama_cpp | ollama
    port: int
    model: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    def command(self) -> list[str]:
        """The command line a user writes in compose: the server's own flags, then where it
        listens (vLLM and llama.cpp take flags; Ollama reads OLLAMA_HOST)."""
        if self.kind == "ollama":
            return list(self.args)
        listen = ["--host", "127.0.0.1", "--port", str(self.port)]
        if self.kind == "vllm":
            listen += ["--served-model-name", self.model]
        return [*self.args, *listen]

    def environment(self) -> dict[str, str]:
        env = dict(self.env)
        if self.kind == "ollama":
            env["OLLAMA_HOST"] = f"127.0.0.1:{self.port}"
        return dict(sorted(env.items()))

    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{HEALTH_PATH[self.kind]}"


@dataclass(frozen=True)
class Stack:
    name: str
    gateway_port: int
    providers: tuple[Provider, ...]
    aliases: dict[str, str] = field(default_factory=dict)   # public name -> provider, in exact_matches

    def provider(self, name: str) -> Provider:
        return next(p for p in self.providers if p.name == name)

    def gateway_health_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/health/liveliness"

    def health_urls(self) -> dict[str, str]:
        """service/provider name -> its health URL, the gateway's included."""
        return {**{p.name: p.health_url() for p in self.providers}, "gateway": self.gateway_health_url()}

    def with_args(self, name: str, args: tuple[str, ...]) -> Stack:
        return self._replace(name, args=args)

    def with_env(self, name: str, env: dict[str, str]) -> Stack:
        return self._replace(name, env=env)

    def with_alias(self, public: str, provider: str) -> Stack:
        """A new public name for `provider`'s model: only the gateway's config changes."""
        return dataclasses.replace(self, aliases={**self.aliases, public: provider})

    def _replace(self, name: str, **change: object) -> Stack:
        return dataclasses.replace(self, providers=tuple(
            dataclasses.replace(p, **change) if p.name == name else p for p in self.providers))  # type: ignore[arg-type]


def make_stack(name: str, ports: list[int], *, per_kind: int = 3) -> Stack:
    """`ports`: 3 * per_kind + 1 free ports, the last one for the gateway."""
    providers = []
    for i in range(per_kind * len(KINDS)):
        kind = KINDS[i % len(KINDS)]
        model = f"bench-m{i}"
        args: tuple[str, ...] = {"vllm": ("--model", model, "--max-model-len", "2048"),
                                 "llama_cpp": ("-c", "2048", "--seed", "0"), "ollama": ()}[kind]
        providers.append(Provider(name=f"p{i}", kind=kind, port=ports[i], model=model, args=args))
    return Stack(name=name, gateway_port=ports[len(providers)], providers=tuple(providers))


# --------------------------------------------------------------------------- the llm-gitops spec


def spec_files(stack: Stack) -> dict[str, str]:
    providers = {}
    for p in stack.providers:
        container: dict[str, object] = {"image": STUB, "startup_timeout_s": 30}
        if p.args:
            container["args"] = list(p.args)
        if p.env:
            container["env"] = dict(p.env)
        providers[p.name] = {"type": p.kind, "status": "active", "base_url": f"http://127.0.0.1:{p.port}",
                             "container": container, "models": [{"name": p.model, "context_length": 2048}]}
    mappings = {"exact_matches": {public: {"provider": prov, "backend_model": stack.provider(prov).model}
                                  for public, prov in stack.aliases.items()}}
    stack_file = {"name": stack.name,
                  "gateway": {"image": STUB, "base_url": f"http://127.0.0.1:{stack.gateway_port}",
                              "master_key_env": MASTER_KEY_ENV, "startup_timeout_s": 30},
                  "policy": {"allowed_images": ["llm-gitops-test/"]}}
    return {"providers.yaml": yaml.safe_dump({"providers": providers}, sort_keys=False),
            "model-mappings.yaml": yaml.safe_dump(mappings, sort_keys=False),
            "stack.yaml": yaml.safe_dump(stack_file, sort_keys=False)}


# --------------------------------------------------------------------------- the compose file


def _healthcheck(url: str) -> dict[str, object]:
    probe = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)"
    return {"test": ["CMD", "python3", "-c", probe, url], "interval": HEALTH_INTERVAL, "timeout": "3s",
            "retries": 3}


def compose_services(stack: Stack, config_dir: str) -> dict[str, dict[str, object]]:
    """`config_dir`: the host directory holding the gateway's config.yaml (mounted read-only
    at the same place as llm-gitops mounts its own)."""
    services: dict[str, dict[str, object]] = {}
    for p in stack.providers:
        service: dict[str, object] = {"image": STUB, "network_mode": "host", "restart": "unless-stopped",
                                      "healthcheck": _healthcheck(p.health_url())}
        if p.command():
            service["command"] = p.command()
        if p.environment():
            service["environment"] = p.environment()
        services[p.name] = service
    services["gateway"] = {
        "image": STUB, "network_mode": "host", "restart": "unless-stopped",
        "command": ["--config", f"{CONFIG_DIR}/config.yaml", "--host", "127.0.0.1", "--port", str(stack.gateway_port)],
        "environment": [MASTER_KEY_ENV],   # passed through from the caller's environment, as a secret
        "volumes": [f"{config_dir}:{CONFIG_DIR}:ro"],
        "healthcheck": _healthcheck(stack.gateway_health_url()),
    }
    return services


def compose_text(stack: Stack, config_dir: str) -> str:
    return yaml.safe_dump({"version": "2.4", "services": compose_services(stack, config_dir)}, sort_keys=False)
