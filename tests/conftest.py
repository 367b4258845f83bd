"""Shared helpers: reading spec dirs, making real git repositories in a temp dir."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(__file__).resolve().parent / "cases"

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network for the cost map


def read_spec_dir(path: Path) -> dict[str, str]:
    from controller.adapters.source import read_dir
    return read_dir(path)


class GitRepo:
    """A real git repository in a temp dir; `commit(files)` replaces the spec files and commits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._git("init", "-q", "-b", "main")

    def _git(self, *args: str) -> str:
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
        return subprocess.run(["git", *args], cwd=self.path, env=env, check=True,
                              capture_output=True, text=True).stdout.strip()

    def commit(self, files: dict[str, str], message: str = "change", subdir: str = "") -> str:
        target = self.path / subdir
        target.mkdir(parents=True, exist_ok=True)
        for old in target.glob("*.yaml"):
            old.unlink()
        for name, text in files.items():
            (target / name).write_text(text)
        self._git("add", "-A")
        self._git("commit", "-q", "--allow-empty", "-m", message)
        return self._git("rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    path = tmp_path / "spec-repo"
    path.mkdir()
    return GitRepo(path)


# --------------------------------------------------------------------------- fuzz counts

_FUZZ_INPUTS: dict[str, int] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect the `fuzz_inputs` property that test_fuzz_spec.py records per test."""
    for name, value in report.user_properties:
        if name == "fuzz_inputs" and report.when == "call" and report.passed:
            _FUZZ_INPUTS[report.nodeid] = int(value)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _FUZZ_INPUTS:
        total = sum(_FUZZ_INPUTS.values())
        terminalreporter.write_line(f"spec loader fuzzing: {total} distinct inputs tried in "
                                    f"{len(_FUZZ_INPUTS)} passing tests, each answered by located project errors or a valid render")
