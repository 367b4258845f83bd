"""Small pure functions, table-driven: image policy matching, GPU sums per host, URLs,
redaction of values that may be secrets, Markdown escaping."""

from __future__ import annotations

import pytest

from conftest import CASES, read_spec_dir
from controller import report
from controller.render import render
from controller.spec import load_files
from controller.spec.rules import image_allowed


@pytest.mark.parametrize("image, prefix, allowed", [
    ("vllm/vllm-openai:v0.8.5", "vllm/", True),
    ("vllmevil/pwn:v1", "vllm", False),
    ("vllmevil/pwn:v1", "vllm/", False),
    ("vllm/vllm-openai:v0.8.5", "docker.io/vllm/", True),
    ("redis:7.4-alpine", "redis", True),
    ("redis:7.4-alpine", "docker.io/library/redis", True),
    ("redisevil:1", "redis", False),
    ("ghcr.io/berriai/litellm:main-v1.108.7", "ghcr.io/berriai/", True),
    ("ghcr.io/berriai-evil/litellm:1", "ghcr.io/berriai", False),
    ("llm-gitops-test/stub:1", "llm-gitops-test/", True),
    ("localhost:5000/x/y:1", "localhost:5000/x/", True),
    ("vllm/vllm-openai@sha256:abc", "vllm/vllm-openai", True),
])
def test_image_policy_matches_on_name_boundaries(image: str, prefix: str, allowed: bool) -> None:
    assert image_allowed(image, prefix) is allowed


def _minimal_with(old: str, new: str) -> dict[str, str]:
    files = read_spec_dir(CASES / "valid" / "minimal")
    assert old in files["providers.yaml"]
    files["providers.yaml"] = files["providers.yaml"].replace(old, new, 1)
    return files


TWO_VLLM = """  vllm-b:
    type: vllm
    base_url: http://127.0.0.1:8002
    gpu_memory_utilization: 0.8
    container:
      image: vllm/vllm-openai:v0.8.5
      args: [--model, org/model-b]
      gpus: [0]
      host: {host_b}
    models: [org/model-b]
  ollama:
"""


def test_gpus_of_different_hosts_do_not_add_up() -> None:
    # RFC 5737 documentation addresses: configuration text only, no test sends traffic
    files = _minimal_with("      gpus: [0]\n", "      gpus: [0]\n      host: gpu-1\n")
    files["providers.yaml"] = files["providers.yaml"].replace("  ollama:\n", TWO_VLLM.format(host_b="gpu-2"), 1)
    files["providers.yaml"] = files["providers.yaml"].replace("http://127.0.0.1:8001", "http://192.0.2.1:8001")
    files["providers.yaml"] = files["providers.yaml"].replace("http://127.0.0.1:8002", "http://192.0.2.2:8002")
    assert load_files(files).errors == []
    files["providers.yaml"] = files["providers.yaml"].replace("host: gpu-2", "host: gpu-1")
    messages = [p.message for p in load_files(files).errors]
    # one cause, one error: the second vLLM is refused, not also counted as over-commit
    assert messages == ["GPU 0 is already held by active vllm provider `vllm-a`"]


def test_gpu_memory_adds_up_across_server_types() -> None:
    files = _minimal_with('      volumes: ["/srv/ollama:/root/.ollama"]\n',
                          '      volumes: ["/srv/ollama:/root/.ollama"]\n      gpus: [0]\n')
    files["providers.yaml"] = files["providers.yaml"].replace(
        "    base_url: http://127.0.0.1:11434\n", "    base_url: http://127.0.0.1:11434\n    gpu_memory_utilization: 0.6\n")
    assert [p.message for p in load_files(files).errors] == [
        "GPU 0 is over-committed: gpu_memory_utilization vllm-a 0.5 + ollama 0.6 = 1.1 > 1.0"]


def test_ipv6_listen_address_gives_a_valid_probe_url() -> None:
    files = _minimal_with("http://127.0.0.1:11434", "http://[::1]:11434")
    ollama = render(load_files(files).require()).container("ollama")
    assert ollama is not None and ollama.health.url == "http://[::1]:11434/api/version"


@pytest.mark.parametrize("field, value", [
    ("env_var", "sk-proj-abcdef0123456789"),
    ("base_url", "https://me:hunter2@ollama.com/v1"),
])
def test_error_output_does_not_repeat_values_that_may_be_secrets(field: str, value: str) -> None:
    files = _minimal_with("    env_var: REMOTE_API_KEY", f"    {field}: {value}" if field == "env_var"
                          else "    env_var: REMOTE_API_KEY")
    if field == "base_url":
        files["providers.yaml"] = files["providers.yaml"].replace("https://ollama.com/v1", value)
    text = report.problems_text(load_files(files).problems)
    assert "error" in text and "hunter2" not in text and "sk-proj" not in text


def test_markdown_escapes_what_would_break_a_table() -> None:
    assert report._code("a|b") == "`a\\|b`"
    assert report._code("x`y") == "``x`y``"
    assert report._cell("a|b <c>") == "a\\|b &lt;c>"


def test_numbers_reach_containers_as_written() -> None:
    files = _minimal_with("      args: [--model, org/model-a]",
                          "      args: [--model, org/model-a, --x, 1:30]\n      env: {UMASK: 0755, X: 0x1F, V: 1.10, B: true}")
    vllm = render(load_files(files).require()).container("vllm-a")
    assert vllm is not None
    assert vllm.env == {"B": "true", "UMASK": "0755", "V": "1.10", "X": "0x1F"}
    assert "1:30" in vllm.command


def test_api_base_follows_each_providers_convention() -> None:
    files = read_spec_dir(CASES / "valid" / "minimal")
    files["providers.yaml"] += """  oa:
    type: openai
    base_url: https://api.openai.com
    env_var: OPENAI_API_KEY
    models: [gpt-4o-mini]
  an:
    type: anthropic
    base_url: https://api.anthropic.com/v1
    env_var: ANTHROPIC_API_KEY
    models: [claude-x]
"""
    files["providers.yaml"] = files["providers.yaml"].replace("http://127.0.0.1:11434", "http://0.0.0.0:11434")
    bases = {e["model_name"]: e["litellm_params"].get("api_base")
             for e in render(load_files(files).require()).litellm_config["model_list"]}
    assert bases["gpt-4o-mini"] == "https://api.openai.com/v1"      # openai/ wants /v1
    assert bases["claude-x"] == "https://api.anthropic.com"         # LiteLLM adds /v1/messages
    assert bases["llama3.1:8b"] == "http://127.0.0.1:11434"         # listening on all: reached on loopback


def test_reordering_settings_in_git_does_not_restart_the_gateway() -> None:
    files = read_spec_dir(CASES / "valid" / "minimal")
    a = dict(files, **{"stack.yaml": files["stack.yaml"].replace(
        "gateway:\n", "gateway:\n  router_settings: {num_retries: 2, timeout: 120}\n")})
    b = dict(a, **{"stack.yaml": a["stack.yaml"].replace("{num_retries: 2, timeout: 120}", "{timeout: 120, num_retries: 2}")})
    assert render(load_files(a).require()).config_digest == render(load_files(b).require()).config_digest
