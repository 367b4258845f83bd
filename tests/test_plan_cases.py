"""Plan cases between two commits of a real git repository made in a temp dir.

Each directory of cases/plan (see its README) names a base spec dir, holds the files its
head commit changes, and `expected.json`: the exit code of `plan --detailed-exitcode`, the
changed steps with their reasons, the public model changes, the impact notes and the
changed lines of the LiteLLM config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import CASES, ROOT, GitRepo, read_spec_dir
from controller.cli import main

PLANS = sorted(p for p in (CASES / "plan").iterdir() if p.is_dir())


def commits(repo: GitRepo, case: Path) -> tuple[str, str]:
    """Commit the case's base spec, then its head (the base with the case's files replaced)."""
    base_files = read_spec_dir(ROOT / (case / "base").read_text().strip())
    base = repo.commit(base_files, "base")
    return base, repo.commit({**base_files, **read_spec_dir(case / "head")}, "head")


def run_plan(repo: GitRepo, *extra: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["plan", "--repo", str(repo.path), *extra])
    return code, capsys.readouterr().out


def summary(out: dict[str, Any]) -> dict[str, Any]:
    if "problems" in out:
        return {"problems": [f"{p['file']}:{p['line']}: {p['subject']}: {p['message']}" for p in out["problems"]]}
    return {
        "steps": [[s["action"], s["container"], s["reasons"]] for s in out["steps"] if s["action"] != "unchanged"],
        "unchanged": [s["container"] for s in out["steps"] if s["action"] == "unchanged"],
        "stops_first": [s["container"] for s in out["steps"] if s["stops_first"]],
        "models": out["models"],
        "notes": out["notes"],
        "new_warnings": [f"{w['file']}:{w['line']}: {w['subject']}" for w in out["warnings"]],
        "known_warnings": out["known_warnings"],
        "config_diff": [line for line in out["config_diff"].splitlines()
                        if line[:1] in "+-" and not line.startswith(("+++", "---"))],
    }


@pytest.mark.parametrize("case", PLANS, ids=lambda p: p.name)
def test_plan_between_commits(case: Path, repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    base, head = commits(repo, case)
    expected = json.loads((case / "expected.json").read_text())
    code, out = run_plan(repo, "--base", base, "--head", head, "--format", "json", "--detailed-exitcode",
                         capsys=capsys)
    assert {"exit": code, **summary(json.loads(out))} == expected


FORMAT_MARKS = {
    "text": ["Plan: ", "Containers:"],
    "markdown": ["<!-- llm-gitops-plan -->", "### llm-gitops plan:", "```mermaid", "graph LR"],
    "json": ['"steps": [', '"config_diff":'],
}


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_every_format_renders_every_case(fmt: str, repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    for case in PLANS:
        base, head = commits(repo, case)
        code, out = run_plan(repo, "--base", base, "--head", head, "--format", fmt, capsys=capsys)
        expected = json.loads((case / "expected.json").read_text())
        assert code == (1 if "problems" in expected else 0)
        assert head[:12] in out
        if fmt == "json":
            json.loads(out)
        if "problems" in expected:
            assert all(p.split(": ", 1)[1].split(":")[0] in out for p in expected["problems"])
            continue
        assert all(mark in out for mark in FORMAT_MARKS[fmt]), (case.name, out[:400])
        for action, container, reasons in expected["steps"]:
            assert container in out and all(r in out for r in reasons), (case.name, container)


def test_no_detailed_exitcode_means_zero_on_changes(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    base, head = commits(repo, CASES / "plan" / "mapping-only")
    assert run_plan(repo, "--base", base, "--head", head, capsys=capsys)[0] == 0
