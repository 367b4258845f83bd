"""Pydantic models of the three spec files: providers.yaml, model-mappings.yaml, stack.yaml.

Second step of the pipeline (files -> Spec): the shapes and types, exactly as
shared/design/SPEC.md describes them, including the informational keys that existing
provider registries carry (they are accepted and never change what runs). Cross-file
rules (references, ports, GPUs, secrets, policy) live in `controller.spec.rules`.
Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

NAME_RE = r"^[a-z0-9][a-z0-9._-]*$"
ENV_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"

ProviderType = Literal["vllm", "ollama", "llama_cpp", "openai_compatible", "openai", "anthropic"]
LOCAL_TYPES = ("vllm", "ollama", "llama_cpp")
DEFAULT_HEALTH_ENDPOINT: dict[str, str] = {
    "vllm": "/health",
    "ollama": "/api/version",
    "llama_cpp": "/health",
}
DEFAULT_STARTUP_TIMEOUT_S: dict[str, int] = {"vllm": 900, "ollama": 120, "llama_cpp": 300}
DEFAULT_GATEWAY_IMAGE = "ghcr.io/berriai/litellm:main-v1.108.7"

INFO = "informational: accepted and shown, never changes what runs"
Info = Annotated[Any, Field(description=INFO)]
EnvName = Annotated[str, Field(pattern=ENV_NAME_RE)]


def _str_scalar(value: Any) -> Any:
    """Env values and args are strings to Docker; a YAML number reaches the container as the
    user wrote it (`0755`, `1.10`, `5:00`), a boolean as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return getattr(value, "source", "") or str(value)
    return value


# Keys of other routers that LiteLLM cannot honour: accepted by the model so that the rules
# can refuse them with what to do instead, and marked invalid in the JSON Schema so editors
# flag them as they are typed.
Refused = Any


def refused(why: str) -> dict[str, Any]:
    return {"not": {}, "description": why}


_Scalar = str | int | float | bool
EnvValue = Annotated[str, BeforeValidator(_str_scalar, json_schema_input_type=_Scalar)]
Arg = Annotated[str, BeforeValidator(_str_scalar, json_schema_input_type=_Scalar)]


class Strict(BaseModel):
    """Every spec model refuses unknown keys (the loader turns that into 'did you mean')."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        """A section left with only comments (`exact_matches:`) is YAML null: treat it as empty."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items()
                    if not (v is None and k in cls.model_fields and cls.model_fields[k].default is not None
                            and not cls.model_fields[k].is_required())}
        return data


def check_url(value: str, schemes: tuple[str, ...], example: str) -> str:
    """An absolute URL of one of `schemes`, with a valid port and no credentials or query."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError("the port must be a number from 1 to 65535") from exc
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"must be {'an' if schemes[0] == 'http' else 'a'} {' or '.join(s + '://' for s in schemes)} URL, e.g. {example}")
    if port == 0:
        raise ValueError("the port must be a number from 1 to 65535")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("must not carry credentials, a query or a fragment; keys go in env_var")
    return value.rstrip("/")


def address(url: str) -> tuple[str, int]:
    """(host, port) of a URL the models accepted: the host without IPv6 brackets, the port
    or the scheme's default. The one place URLs are taken apart, so `[::1]` works everywhere."""
    parts = urlsplit(url)
    default = {"https": 443, "redis": 6379}.get(parts.scheme, 80)
    return parts.hostname or "", parts.port or default


def reachable_host(host: str) -> str:
    """Where a server that listens on `host` is reached from this machine: a listen-all
    address (0.0.0.0, ::) on loopback. Used for the gateway's api_base and for health probes."""
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)


def url_host(host: str) -> str:
    """A host as it goes back into a URL: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host else host


def check_host_port(value: str, scheme: str, example: str) -> str:
    """`scheme://HOST:PORT` and nothing more: the address a container the controller runs binds."""
    value = check_url(value, (scheme,), example)
    if urlsplit(value).port is None or urlsplit(value).path:
        raise ValueError(f"must be {scheme}://HOST:PORT, e.g. {example}")
    return value


# --------------------------------------------------------------------------- providers.yaml


class Model(Strict):
    """One model a provider serves. A bare string `- gpt-4` means `{name: gpt-4}`."""

    name: str = Field(min_length=1)
    context_length: int | None = Field(default=None, gt=0)
    options: dict[str, Any] | None = None  # ollama only: sent as extra_body.options
    # informational keys of existing registries
    size: Info = None
    quantization: Info = None
    specialty: Info = None
    use_case: Info = None
    description: Info = None
    tags: Info = None
    pulled_at: Info = None
    notes: Info = None
    model_size_gb: Info = None
    features: Info = None
    family: Info = None
    parameters: Info = None
    license: Info = None
    docs: Info = None
    cost_per_1k_tokens: Info = None
    rate_limits: Info = None


def _model_from_str(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


ModelEntry = Annotated[Model, BeforeValidator(_model_from_str, json_schema_input_type=str | Model)]


GPU_ID = re.compile(r"^[0-9]+$|^GPU-[0-9a-fA-F-]+$")


def _gpus(value: Any) -> Any:
    """`gpus: all`, `gpus: [0, 1]` or `gpus: 0` (ids or GPU-UUIDs, kept as strings, as Docker
    wants them). Validated here in full, so a mistake gets one plain message."""
    if value is None or value == "all":
        return value
    items = value if isinstance(value, list) else [value]
    ids = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in items]
    if not ids or not all(isinstance(v, str) and GPU_ID.match(v) for v in ids):
        raise ValueError("gpus is `all` or a list of device ids like [0, 1] (or GPU-<uuid>)")
    return ids


class Container(Strict):
    """How a local provider runs. Present: the controller runs it; absent: an external server."""

    image: str = Field(min_length=1)
    args: list[Arg] = []
    env: dict[EnvName, EnvValue] = {}
    secret_env: list[EnvName] = []
    volumes: list[str] = []
    gpus: Annotated[Any, BeforeValidator(_gpus, json_schema_input_type=Literal["all"] | int | list[int | str] | None)] = None
    ipc: Literal["host"] | None = None
    shm_size: str | None = Field(default=None, pattern=r"^[0-9]+[bkmgBKMG]?$")
    startup_timeout_s: int | None = Field(default=None, gt=0, le=86400)
    host: str | None = None
    privileged: bool = False


class Provider(Strict):
    """One inference server in the registry, local (a container) or remote (an API)."""

    type: ProviderType
    status: Literal["active", "disabled", "template"] = "active"
    base_url: str | None = None
    health_endpoint: str | None = Field(default=None, pattern=r"^/")
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    env_var: EnvName | None = None
    api_key: str | None = None  # only `os.environ/NAME` is allowed (rule 5 refuses literals)
    container: Container | None = None
    models: list[ModelEntry] = []
    # informational keys of existing registries
    description: Info = None
    features: Info = None
    docs: Info = None
    location: Info = None
    notes: Info = None
    hardware_requirements: Info = None
    rate_limits: Info = None
    cost_per_1k_tokens: Info = None
    requires_api_key: Info = None
    tags: Info = None

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value, ("http", "https"), "http://127.0.0.1:8001")


class ProvidersFile(Strict):
    providers: dict[Annotated[str, Field(pattern=NAME_RE)], Provider]
    metadata: Info = None
    health_checks: Info = None


# --------------------------------------------------------------------------- model-mappings.yaml


class ExactMatch(Strict):
    provider: str
    backend_model: str | None = None
    description: Info = None
    notes: Info = None
    tags: Info = None
    use_case: Info = None


class FallbackChain(Strict):
    chain: list[str] = []  # [] = no fallback for this model, not even the `default` chain
    description: Info = None
    notes: Info = None


class BalancedTarget(Strict):
    provider: str
    model: str | None = None
    weight: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    condition: Refused = Field(None, json_schema_extra=refused("LiteLLM cannot route on conditions; use weights, "
                                                              "or a separate public name per case"))
    description: Info = None


class LoadBalancing(Strict):
    providers: list[BalancedTarget] = Field(min_length=1)
    strategy: str | None = None  # only the stack-wide routing_strategy exists in LiteLLM
    description: Info = None


class Capability(Strict):
    preferred_models: list[str] = Field(min_length=1)
    description: Info = None
    notes: Info = None


class ErrorBasedRouting(Strict):
    enabled: bool = True
    error_threshold: int = Field(default=3, ge=1)
    cooldown_seconds: int = Field(default=60, ge=1)
    description: Info = None


class RateLimitedFallback(Strict):
    enabled: bool = True
    fallback_duration_seconds: int = Field(default=60, ge=1)
    description: Info = None


class SpecialCases(Strict):
    error_based_routing: ErrorBasedRouting | None = None
    rate_limited_fallback: RateLimitedFallback | None = None


class MappingsFile(Strict):
    exact_matches: dict[str, ExactMatch] = {}
    fallback_chains: dict[str, FallbackChain] = {}
    load_balancing: dict[str, LoadBalancing] = {}
    capabilities: dict[str, Capability] = {}
    special_cases: SpecialCases = SpecialCases()
    # features of other routers that LiteLLM lacks: parsed so rules.py can say what to do instead
    routing_rules: Refused = Field(None, json_schema_extra=refused(
        "LiteLLM has no routing rules; use fallback_chains, load_balancing and capabilities"))
    patterns: Refused = Field(None, json_schema_extra=refused(
        "LiteLLM does not route by regex; give models public names in exact_matches"))
    routing_strategy: Refused = Field(None, json_schema_extra=refused(
        "the strategy is stack-wide: set gateway.router_settings.routing_strategy in stack.yaml"))
    metadata: Info = None


# --------------------------------------------------------------------------- stack.yaml


class Gateway(Strict):
    image: str = DEFAULT_GATEWAY_IMAGE
    base_url: str = "http://127.0.0.1:4000"
    master_key_env: EnvName = "LITELLM_MASTER_KEY"
    secret_env: list[EnvName] = []
    env: dict[EnvName, EnvValue] = {}
    router_settings: dict[str, Any] = {}
    litellm_settings: dict[str, Any] = {}
    startup_timeout_s: int = Field(default=120, gt=0, le=86400)
    description: Info = None

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_host_port(value, "http", "http://127.0.0.1:4000")


class Cache(Strict):
    image: str = Field(min_length=1)
    base_url: str = "redis://127.0.0.1:6379"
    ttl: int = Field(default=3600, gt=0)
    startup_timeout_s: int = Field(default=60, gt=0, le=86400)
    description: Info = None

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_host_port(value, "redis", "redis://127.0.0.1:6379")


class Policy(Strict):
    allowed_mount_roots: list[Annotated[str, Field(pattern=r"^/")]] = ["/srv", "/models", "/data"]
    allow_privileged: bool = False
    allowed_images: list[str] = []


class StackFile(Strict):
    name: str = Field(default="llm", pattern=NAME_RE)
    gateway: Gateway = Gateway()
    cache: Cache | None = None
    policy: Policy = Policy()
    description: Info = None
    metadata: Info = None


class Spec(Strict):
    """The three files of one spec directory, parsed. Built by `controller.spec.load_files`."""

    providers: ProvidersFile
    mappings: MappingsFile = MappingsFile()
    stack: StackFile = StackFile()


def informational_keys(model: type[BaseModel]) -> frozenset[str]:
    """The keys of `model` that never change what runs (the plan ignores them)."""
    return frozenset(n for n, f in model.model_fields.items() if f.description == INFO)
