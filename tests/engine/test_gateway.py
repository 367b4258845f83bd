"""config/demo with the real LiteLLM proxy and Redis: `llm-gitops apply` brings it up and a chat
completion through the gateway reaches a stub backend. (Issue 5 goes further: canary,
fallbacks, the cache.) The stack name and ports are changed so the test never meets a demo
the user is running."""

from __future__ import annotations

import re
from typing import Any

import pytest

from conftest import ROOT
from engine.lab import Lab, ask, free_port

pytestmark = pytest.mark.docker


def _demo_files(lab: Lab) -> dict[str, str]:
    files = {p.name: p.read_text() for p in (ROOT / "config" / "demo").glob("*.yaml")}
    ports = {int(p) for text in files.values() for p in re.findall(r"127\.0\.0\.1:(\d+)", text)}
    mapping = {p: free_port() for p in ports}
    for name, text in files.items():
        text = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{mapping[int(m.group(1))]}", text)
        files[name] = re.sub(r"(?m)^name: demo$", f"name: {lab.name}", text)
    lab.ports["gateway"] = mapping[14000]
    return files


def test_apply_brings_up_config_demo_with_the_real_gateway(lab: Lab) -> None:
    commit = lab.repo.commit(_demo_files(lab), "the demo stack")
    code, out, err = lab.apply()
    assert code == 0, out + err
    names = ", ".join(lab.cname(k) for k in ("cache", "llamacpp-tiny", "ollama-tiny", "vllm-tiny", "gateway"))
    assert f"{commit[:12]}: applied: created {names}; config swapped" in out
    images = {n: i["Config"]["Image"] for n, i in lab.containers().items()}
    assert images[lab.cname("gateway")] == "llm-gitops-test/litellm:1.108.7"
    assert images[lab.cname("cache")] == "llm-gitops-test/redis:1"

    status, answer = ask(lab, "qwen-tiny")
    assert status == 200
    assert answer["choices"][0]["message"]["content"].startswith("stub demo/qwen-tiny on 127.0.0.1:")
    status, answer = ask(lab, "phi-mini")
    assert status == 200 and "stub phi-mini" in answer["choices"][0]["message"]["content"]
    status, answer = ask(lab, "qwen-tiny", key=None)
    assert status == 401, answer  # the master key is required

    code, out, _ = lab.apply()
    assert code == 0 and "nothing to do" in out


def test_make_demo_runs_end_to_end(lab: Lab, tmp_path: Any) -> None:
    """scripts/demo.sh as `make demo` runs it (stdin not a terminal: the controller is stopped
    at the end), under this test's stack name and free ports."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    offset = next(o for o in range(20000, 40000, 97)
                  if all(_free(p + o) for p in (14000, 16379, 18001, 18002, 18003, 8790)))
    env = {**os.environ, "DEMO_DIR": str(tmp_path / "demo"), "DEMO_STACK": lab.name, "DEMO_PORT_OFFSET": str(offset),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("LITELLM_MASTER_KEY")  # the demo makes one
    result = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    out = result.stdout + result.stderr   # the controller logs to stderr
    assert result.returncode == 0, out
    assert f"applied: created {lab.name}-cache, " in out and "; config swapped" in out
    assert "answer: stub demo/qwen-tiny on 127.0.0.1:" in out
    # the controller ran in the foreground, saw the commit and converged: only vllm-tiny restarted
    assert "trigger=commit" in out and f"commit: applied: recreated {lab.name}-vllm-tiny\n" in out
    assert "Controller stopped. The stack keeps running" in out and "lock_released" in out
    key = (tmp_path / "demo" / "master-key").read_text().strip()
    assert len(key) > 40 and key not in out
    assert (tmp_path / "demo" / "master-key").stat().st_mode & 0o777 == 0o600


def _free(port: int) -> bool:
    import socket
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_make_demo_uses_the_official_gateway_image_when_the_host_has_one(lab: Lab, tmp_path: Any) -> None:
    """A host with LiteLLM's own image of the pinned version (here: the local build, tagged
    with the official name for the test, and untagged afterwards if the host had no such tag)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    official = "ghcr.io/berriai/litellm:main-v1.108.7"
    had = subprocess.run(["docker", "image", "inspect", official], capture_output=True).returncode == 0
    if not had:
        lab.engine.api.tag("llm-gitops-test/litellm:1.108.7", "ghcr.io/berriai/litellm", "main-v1.108.7")
    try:
        offset = next(o for o in range(40000, 45000, 89)
                      if all(_free(p + o) for p in (14000, 16379, 18001, 18002, 18003, 8790)))
        env = {**os.environ, "DEMO_DIR": str(tmp_path / "demo"), "DEMO_STACK": lab.name,
               "DEMO_PORT_OFFSET": str(offset), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        result = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=600)
        out = result.stdout + result.stderr
        assert result.returncode == 0, out
        assert f"Gateway image: {official} (found on this host)" in out
        assert lab.containers()[lab.cname("gateway")]["Config"]["Image"] == official
        assert "answer: stub demo/qwen-tiny on 127.0.0.1:" in out
    finally:
        if not had:
            lab.engine.api.remove_image(official, noprune=True)
