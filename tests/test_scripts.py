"""The README's commands run: `make demo`'s script end to end, and `make bench`'s at a small size.

Speed is measured by `make bench`, never asserted here; this only proves the scripts work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

VENV_BIN = str(Path(sys.executable).parent)


def test_demo_script_validates_commits_and_plans(tmp_path: Path) -> None:
    """The offline half; tests/engine/test_gateway.py runs the whole script on the engine."""
    env = {**os.environ, "DEMO_DIR": str(tmp_path), "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "DEMO_OFFLINE": "1"}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "config/example: valid" in out
    assert "remove    lab-vllm-qwen" in out and "create    lab-vllm-dolphin" in out
    assert "The GPU 0 holder changes from vllm-qwen to vllm-dolphin" in out
    assert "```mermaid" in (tmp_path / "plan.md").read_text()


def test_bench_script_runs(tmp_path: Path) -> None:
    out = tmp_path / "core.json"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_core.py"), "3", "20", "--json", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:] if line.split()[0].isdigit()]
    assert [row[0] for row in rows] == ["3", "20"]
    assert "growth: total ~ N^" in result.stdout
    data = json.loads(out.read_text())
    assert [r["providers"] for r in data["sizes"]] == [3, 20]
    assert all(r["total_s"] > 0 and r["per_provider_ms"] > 0 for r in data["sizes"])
    assert data["linearity"]["fitted_sizes"] == [3, 20]


def test_readme_shows_the_commands_and_real_outputs() -> None:
    readme = (ROOT / "README.md").read_text()
    for needle in ("make test", "make demo", "make bench", "llm-gitops validate", "llm-gitops plan",
                   "remove    lab-vllm-qwen", "The GPU 0 holder changes from vllm-qwen to vllm-dolphin"):
        assert needle in readme, needle
    # the validate examples it prints are real outputs of the cases they come from
    for case, line in (("01-unknown-key-typo", "providers.yaml:14:5: error: ollama: `stauts`: unknown key"),
                       ("04-two-vllm-one-gpu", "providers.yaml:19:7: error: vllm-b: GPU 0 is already held")):
        assert line in readme and line in (ROOT / "tests" / "cases" / "invalid" / case / "expected.txt").read_text()
