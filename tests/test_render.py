"""Rendering: golden files, LiteLLM's own Router accepts every rendered config, determinism,
hashes that move exactly when a container should restart, and no secret values anywhere."""

from __future__ import annotations

import os
from pathlib import Path

import litellm
import pytest
import yaml

from conftest import CASES, ROOT, read_spec_dir
from controller.render import render
from controller.render.containers import GATEWAY_CONFIG_FILE
from controller.spec import load_files

VALID = {p.name: p for p in sorted((CASES / "valid").iterdir()) if p.is_dir()}
VALID |= {f"config-{name}": ROOT / "config" / name for name in ("example", "demo")}
GOLDEN = CASES / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def _render(path: Path, **kw: object):  # type: ignore[no-untyped-def]
    return render(load_files(read_spec_dir(path)).require(str(path)), **kw)  # type: ignore[arg-type]


def _text(path: Path) -> str:
    return yaml.safe_dump(_render(path).as_dict(), sort_keys=False, width=100)


@pytest.mark.parametrize("name", sorted(VALID))
def test_render_matches_golden(name: str) -> None:
    golden = GOLDEN / f"{name}.yaml"
    text = _text(VALID[name])
    if UPDATE:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.read_text() == text, f"render changed; review and rerun with UPDATE_GOLDEN=1 ({golden})"


def router_kwargs(config: dict) -> dict:  # type: ignore[type-arg]
    """router_settings minus redis_*: with them the Router connects to Redis while it is built
    (and retries for seconds when none runs: the redis client is not even a dependency here).
    The cache wiring is checked by test_gateway_config_wiring, and live by the runtime's tests."""
    return {k: v for k, v in config["router_settings"].items() if not k.startswith("redis_")}


# every valid spec the suite holds: the valid cases, the examples, the valid broken-dir cases
# (warnings only) and the head of every plan case
ROUTED = dict(VALID)
ROUTED |= {f"invalid/{p.name}": p for p in sorted((CASES / "invalid").iterdir()) if p.name.startswith("09-")}


def _plan_head(case: Path) -> dict[str, str]:
    base = read_spec_dir(ROOT / (case / "base").read_text().strip())
    return {**base, **read_spec_dir(case / "head")}


PLAN_HEADS = {p.name: p for p in sorted((CASES / "plan").iterdir())
              if p.is_dir() and '"problems"' not in (p / "expected.json").read_text()}  # valid heads only


@pytest.mark.parametrize("name", sorted(ROUTED))
def test_litellm_router_accepts_rendered_config(name: str) -> None:
    """litellm.Router raises on bad provider prefixes, unknown kwargs and bad strategies,
    which `litellm --validate_config` lets through."""
    config = _render(ROUTED[name]).litellm_config
    router = litellm.Router(model_list=config["model_list"], **router_kwargs(config))
    assert len(router.model_list) == len(config["model_list"])
    groups = set(router.model_names)
    for entry in config["router_settings"].get("fallbacks", []):
        ((name_, chain),) = entry.items()
        assert set(chain) <= groups | set(config["router_settings"].get("model_group_alias", {}))


@pytest.mark.parametrize("name", sorted(PLAN_HEADS))
def test_litellm_router_accepts_every_plan_head(name: str) -> None:
    config = render(load_files(_plan_head(PLAN_HEADS[name])).require()).litellm_config
    litellm.Router(model_list=config["model_list"], **router_kwargs(config))


def test_the_router_check_catches_a_bad_prefix() -> None:
    config = _render(CASES / "valid" / "minimal").litellm_config
    config["model_list"][0]["litellm_params"]["model"] = "hostedvllm/x"
    with pytest.raises(Exception, match="LLM Provider NOT provided"):
        litellm.Router(model_list=config["model_list"], **router_kwargs(config))


@pytest.mark.parametrize("name", sorted(VALID))
def test_render_is_byte_identical_across_runs(name: str) -> None:
    assert _text(VALID[name]) == _text(VALID[name])
    assert _render(VALID[name]).config_text == _render(VALID[name]).config_text


def test_provider_prefixes_follow_litellm_conventions() -> None:
    models = {e["model_name"]: e["litellm_params"] for e in _render(ROOT / "config" / "example").litellm_config["model_list"]}
    assert models["qwen-coder-vllm"]["model"] == "hosted_vllm/Qwen/Qwen2.5-Coder-7B-Instruct-AWQ"
    assert models["qwen-coder-vllm"]["api_base"].endswith(":8001/v1")
    assert models["llama3.1:latest"]["model"] == "ollama_chat/llama3.1:latest"
    assert not models["llama3.1:latest"]["api_base"].endswith("/v1")
    assert models["phi-3.5-mini"]["model"].startswith("openai/") and models["phi-3.5-mini"]["api_base"].endswith("/v1")
    assert models["gpt-oss:120b"]["api_key"] == "os.environ/OLLAMA_API_KEY"


def test_gateway_config_wiring() -> None:
    desired = _render(ROOT / "config" / "demo")
    config = desired.litellm_config
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert config["litellm_settings"]["cache"] is True
    assert config["litellm_settings"]["cache_params"]["port"] == 16379
    assert config["router_settings"]["redis_port"] == 16379
    # an alias gets its own fallback entry: LiteLLM does not follow it to its target's chain
    assert config["router_settings"]["model_group_alias"] == {"chat": "qwen-tiny"}
    fallbacks = dict(next(iter(e.items())) for e in config["router_settings"]["fallbacks"])
    assert fallbacks["chat"] == ["tinyllama:1.1b", "phi-mini"]
    gateway = desired.container("gateway")
    assert gateway is not None and GATEWAY_CONFIG_FILE in gateway.command
    assert gateway.config_digest == desired.config_digest
    assert "LITELLM_MASTER_KEY" in gateway.secret_env


def test_provider_containers_listen_where_base_url_says() -> None:
    desired = _render(ROOT / "config" / "demo")
    vllm, ollama, llamacpp = (desired.container(k) for k in ("vllm-tiny", "ollama-tiny", "llamacpp-tiny"))
    assert vllm and vllm.command[-6:] == ("--host", "127.0.0.1", "--port", "18001", "--served-model-name", "demo/qwen-tiny")
    assert ollama and ollama.env["OLLAMA_HOST"] == "127.0.0.1:18002"
    assert llamacpp and ("--port", "18003") == llamacpp.command[-2:]
    assert [c.key for c in desired.containers] == ["cache", "llamacpp-tiny", "ollama-tiny", "vllm-tiny", "gateway"]


def _hashes(files: dict[str, str], **kw: object) -> dict[str, str]:
    return {c.key: c.spec_hash for c in render(load_files(files).require(), **kw).containers}  # type: ignore[arg-type]


def test_hash_moves_only_for_what_restarts() -> None:
    base = read_spec_dir(ROOT / "config" / "demo")
    before = _hashes(base)
    described = dict(base, **{"providers.yaml": base["providers.yaml"].replace(
        "Stub standing in for a vLLM server", "a new description")})
    assert _hashes(described) == before, "an informational change must restart nothing"
    args = dict(base, **{"providers.yaml": base["providers.yaml"].replace('"2048"]', '"2048", --enforce-eager]', 1)})
    changed = {k for k, v in _hashes(args).items() if before[k] != v}
    assert changed == {"vllm-tiny"}
    # what only the controller uses (probe, patience, placement) restarts nothing
    probing = dict(base, **{"providers.yaml": base["providers.yaml"].replace(
        "      startup_timeout_s: 60\n", "      startup_timeout_s: 600\n      host: gpu-1\n", 1).replace(
        "    base_url: http://127.0.0.1:18001\n", "    base_url: http://127.0.0.1:18001\n    health_endpoint: /v1/models\n")})
    assert _hashes(probing) == before
    mapping = dict(base, **{"model-mappings.yaml": base["model-mappings.yaml"].replace(
        "chain: [tinyllama:1.1b, phi-mini]", "chain: [phi-mini]")})
    assert {k for k, v in _hashes(mapping).items() if before[k] != v} == {"gateway"}


def test_secret_values_only_move_the_hash() -> None:
    files = read_spec_dir(ROOT / "config" / "demo")
    a = _hashes(files, secret_fingerprints={"LITELLM_MASTER_KEY": "fp1"})
    b = _hashes(files, secret_fingerprints={"LITELLM_MASTER_KEY": "fp2"})
    assert {k for k in a if a[k] != b[k]} == {"gateway"}


def test_host_name_places_providers() -> None:
    files = read_spec_dir(CASES / "valid" / "minimal")
    files["providers.yaml"] = files["providers.yaml"].replace("      gpus: [0]\n", "      gpus: [0]\n      host: gpu-2\n")
    spec = load_files(files).require()
    assert "vllm-a" in [c.key for c in render(spec).containers]
    assert "vllm-a" in [c.key for c in render(spec, host_name="gpu-2").containers]
    assert "vllm-a" not in [c.key for c in render(spec, host_name="gpu-1").containers]


def test_render_is_byte_identical_across_processes_and_hash_seeds() -> None:
    """Set and dict order must not leak into the output: same commit, same bytes, always."""
    import subprocess
    import sys
    code = ("import sys, yaml; from controller.adapters.source import read_dir; from controller.spec import load_files;"
            "from controller.render import render; d = render(load_files(read_dir(sys.argv[1])).require());"
            "sys.stdout.write(d.config_text + yaml.safe_dump(d.as_dict()))")
    outputs = {subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout
               for path in (ROOT / "config" / "example",) for seed in ("0", "1", "12345")}
    assert len(outputs) == 1
