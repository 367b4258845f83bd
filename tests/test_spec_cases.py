"""Table-driven: every broken spec dir in cases/invalid gives exactly its expected.txt.

One directory per rule of SPEC.md "Rules checked before anything runs" (see the README
there); each expected message names file:line:column, the subject, and what to do.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import CASES, read_spec_dir
from controller import report
from controller.cli import main
from controller.spec import load_files

INVALID = sorted(p for p in (CASES / "invalid").iterdir() if p.is_dir())


@pytest.mark.parametrize("case", INVALID, ids=lambda p: p.name)
def test_broken_spec_gives_expected_problems(case: Path) -> None:
    loaded = load_files(read_spec_dir(case))
    assert report.problems_text(loaded.problems) + "\n" == (case / "expected.txt").read_text()


@pytest.mark.parametrize("case", INVALID, ids=lambda p: p.name)
def test_validate_exit_code(case: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    only_warnings = case.name.startswith("09-")  # 09-*: valid, maybe with warnings
    monkeypatch.chdir(case)
    assert main(["validate"]) == (0 if only_warnings else 1)
    out = capsys.readouterr().out
    assert out.startswith((case / "expected.txt").read_text())
    assert out.rstrip().endswith("valid" if only_warnings else "invalid; nothing would be applied")


def test_validate_names_files_from_where_the_user_stands(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CASES)
    assert main(["validate", "invalid/03-port-clash"]) == 1
    assert capsys.readouterr().out.startswith("invalid/03-port-clash/providers.yaml:14:5: error: ollama: port 8001")


def test_every_problem_has_a_location_and_a_hint() -> None:
    for case in INVALID:
        for problem in load_files(read_spec_dir(case)).problems:
            assert problem.file and problem.subject and problem.message, (case.name, problem)
            if problem.file != "providers.yaml" or "not found" not in problem.message:
                assert problem.line >= 1 and problem.column >= 1, (case.name, problem)
            assert problem.hint, f"{case.name}: {problem.format()} says what is wrong but not what to do"


def test_all_problems_are_reported_at_once() -> None:
    files = read_spec_dir(CASES / "valid" / "minimal")
    files["providers.yaml"] = files["providers.yaml"].replace(
        "http://127.0.0.1:11434", "http://127.0.0.1:8001").replace(
        "    env_var: REMOTE_API_KEY", "    api_key: sk-0123456789abcdef")
    files["stack.yaml"] += "policy:\n  allowed_images: [ghcr.io/]\n"
    problems = load_files(files).errors
    assert [(p.file, p.line, p.subject) for p in problems] == [
        ("providers.yaml", 7, "vllm-a.container.image"),   # policy
        ("providers.yaml", 14, "ollama"),                  # ports
        ("providers.yaml", 16, "ollama.container.image"),  # policy
        ("providers.yaml", 24, "remote.api_key"),          # secrets
        ("stack.yaml", 5, "cache.image"),                  # policy
    ]


def test_example_configs_validate() -> None:
    from conftest import ROOT
    for name in ("example", "demo"):
        loaded = load_files(read_spec_dir(ROOT / "config" / name))
        assert loaded.problems == [], [p.format() for p in loaded.problems]
