"""The CLI shapes that users and later issues script against: exit codes, formats, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import CASES, ROOT, GitRepo, read_spec_dir
from controller.cli import main

DEMO = ROOT / "config" / "demo"


def test_validate_valid_dir(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(DEMO)]) == 0
    assert capsys.readouterr().out.endswith(f"0 error(s), 0 warning(s)\n{DEMO}: valid\n")


def test_validate_missing_dir(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "/nonexistent/spec"]) == 1
    assert "/nonexistent/spec: does not exist" in capsys.readouterr().err


def test_render_yaml_and_json_have_the_documented_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(DEMO)]) == 0
    from_yaml = yaml.safe_load(capsys.readouterr().out)
    assert main(["render", str(DEMO), "--format", "json"]) == 0
    from_json = json.loads(capsys.readouterr().out)
    assert from_yaml == from_json
    assert set(from_json) == {"litellm_config", "containers"}
    assert [c["name"] for c in from_json["containers"]] == [
        "demo-cache", "demo-llamacpp-tiny", "demo-ollama-tiny", "demo-vllm-tiny", "demo-gateway"]


def test_render_of_invalid_dir_lists_problems(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(CASES / "invalid" / "03-port-clash")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "providers.yaml:14:5: error: ollama: port 8001" in captured.err


def test_secret_values_never_appear(tmp_path: Path, repo: GitRepo, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Secrets live in the controller's environment; the CLI prints only their names."""
    canary = "sk-canary-3f9a1c0d5e7b"
    for name in ("LITELLM_MASTER_KEY", "HF_TOKEN", "OLLAMA_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.setenv(name, canary)
    example = ROOT / "config" / "example"
    base = repo.commit(read_spec_dir(DEMO))
    head = repo.commit(read_spec_dir(example))
    outputs = []
    for argv in (["render", str(example)], ["render", str(example), "--format", "json"], ["validate", str(example)],
                 *(["plan", "--repo", str(repo.path), "--base", base, "--head", head, "--format", f]
                   for f in ("text", "markdown", "json"))):
        main(argv)
        outputs.append(capsys.readouterr())
    text = "".join(o.out + o.err for o in outputs)
    assert canary not in text
    assert "os.environ/LITELLM_MASTER_KEY" in text and "HF_TOKEN" in text


def test_plan_invalid_head_is_an_error_listing_problems(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    base = repo.commit(read_spec_dir(DEMO))
    broken = read_spec_dir(DEMO)
    broken["providers.yaml"] = broken["providers.yaml"].replace("type: ollama", "type: olama")
    head = repo.commit(broken)
    code = main(["plan", "--repo", str(repo.path), "--base", base, "--head", head, "--detailed-exitcode",
                 "--format", "markdown"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"`{head[:12]}` is invalid" in out and "ollama-tiny.type" in out


def _plan_json(repo: GitRepo, base: str, head: str, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:  # type: ignore[type-arg]
    assert main(["plan", "--repo", str(repo.path), "--base", base, "--head", head, "--format", "json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_plan_from_nothing(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    empty = repo.commit({}, "before the spec")
    head = repo.commit(read_spec_dir(DEMO))
    for base in ("none", empty):
        out = _plan_json(repo, base, head, capsys)
        assert [s["action"] for s in out["steps"]] == ["create"] * 5
    assert out["preface"] == [f"The base commit {empty[:12]} has no spec yet; this plan starts from nothing."]


def test_an_invalid_base_plans_from_its_nearest_valid_ancestor(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    good = repo.commit(read_spec_dir(DEMO), "good")
    broken = read_spec_dir(DEMO)
    broken["stack.yaml"] += "bogus: 1\n"
    bad = repo.commit(broken, "broken")
    fixed = read_spec_dir(DEMO)
    fixed["stack.yaml"] = fixed["stack.yaml"].replace("num_retries: 1", "num_retries: 2")
    head = repo.commit(fixed, "fix")
    out = _plan_json(repo, bad, head, capsys)
    assert out["base"] == good
    assert out["preface"][0].startswith(f"The base commit {bad[:12]} is itself invalid (1 error(s)); "
                                        f"this plan starts from its nearest valid ancestor {good[:12]}")
    assert [(s["action"], s["container"]) for s in out["steps"] if s["action"] != "unchanged"] == [
        ("recreate", "demo-gateway")]


def test_symlinked_spec_files_are_refused(tmp_path: Path, repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec"
    spec.mkdir()
    (tmp_path / "real.yaml").write_text((DEMO / "providers.yaml").read_text())
    (spec / "providers.yaml").symlink_to(tmp_path / "real.yaml")
    assert main(["validate", str(spec)]) == 1
    assert "a symbolic link; git stores the link, not the file" in capsys.readouterr().err


@pytest.mark.parametrize("path", ["stacks/gpu-1", "./stacks/gpu-1/", "{top}/stacks/gpu-1"])
def test_path_may_be_written_as_users_do(path: str, repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    base = repo.commit(read_spec_dir(DEMO), subdir="stacks/gpu-1")
    out = _plan_json(repo, base, base, capsys, "--path", path.format(top=repo.path))
    assert out["changes"] is False


def test_repo_may_be_a_subdirectory(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    base = repo.commit(read_spec_dir(DEMO), subdir="stacks/gpu-1")
    assert main(["plan", "--repo", str(repo.path / "stacks"), "--base", base, "--head", base,
                 "--path", "stacks/gpu-1"]) == 0
    assert "No changes" in capsys.readouterr().out


def test_usage_errors_exit_1_not_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Under --detailed-exitcode, 2 means "changes": a typo in CI must not look like one."""
    for typo in ("--detailed-exit-code", "--detailed-exitcod"):
        with pytest.raises(SystemExit) as exited:
            main(["plan", "--repo", ".", "--base", "a", "--head", "b", typo])
        assert exited.value.code == 1
        assert f"unrecognized arguments: {typo}" in capsys.readouterr().err


def test_debug_works_after_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--debug", str(DEMO)]) == 0


def test_plan_with_path_reads_a_subdirectory(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    changed = read_spec_dir(CASES / "plan" / "one-provider-args" / "head")
    base = repo.commit(read_spec_dir(DEMO), subdir="stacks/gpu-1")
    head = repo.commit({**read_spec_dir(DEMO), **changed}, subdir="stacks/gpu-1")
    assert main(["plan", "--repo", str(repo.path), "--base", base, "--head", head, "--path", "stacks/gpu-1",
                 "--format", "json"]) == 0
    steps = [s for s in json.loads(capsys.readouterr().out)["steps"] if s["action"] != "unchanged"]
    assert [(s["action"], s["container"]) for s in steps] == [("recreate", "demo-vllm-tiny")]
    assert main(["plan", "--repo", str(repo.path), "--base", base, "--head", head, "--path", "stacks/nope"]) == 1
    assert "no directory `stacks/nope`; check --path" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--repo", "/nonexistent", "--base", "a", "--head", "b"], "not a git repository"),
    (["--base", "nosuchrev", "--head", "HEAD"], "revision `nosuchrev` not found"),
])
def test_plan_source_errors_are_one_clear_line(argv: list[str], message: str, repo: GitRepo,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    repo.commit(read_spec_dir(DEMO))
    if "--repo" not in argv:
        argv = ["--repo", str(repo.path), *argv]
    assert main(["plan", *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_schema_describes_the_three_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schemas = json.loads(capsys.readouterr().out)
    assert set(schemas) == {"providers.yaml", "model-mappings.yaml", "stack.yaml"}
    assert main(["schema", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model-mappings.schema.json", "providers.schema.json", "stack.schema.json"]


def test_committed_schemas_are_current(tmp_path: Path) -> None:
    assert main(["schema", "--out", str(tmp_path)]) == 0
    for fresh in tmp_path.iterdir():
        assert (ROOT / "schema" / fresh.name).read_text() == fresh.read_text(), "run `make schema`"


def test_example_files_validate_against_the_json_schema() -> None:
    for directory in (ROOT / "config" / "example", DEMO, CASES / "valid" / "registry-style"):
        for file in directory.glob("*.yaml"):
            schema = json.loads((ROOT / "schema" / file.name.replace(".yaml", ".schema.json")).read_text())
            data = json.loads(json.dumps(yaml.safe_load(file.read_text()), default=str))
            jsonschema.validate(data, schema)


def test_console_script_runs() -> None:
    exe = Path(sys.executable).with_name("llm-gitops")
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True)
    for command in ("validate", "render", "plan", "schema"):
        assert command in result.stdout


def test_pre_commit_hook_runs_validate(tmp_path: Path) -> None:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    (hook,) = [h for h in hooks if h["id"] == "llm-gitops-validate"]
    assert hook["pass_filenames"] is False
    exe = Path(sys.executable).with_name(hook["entry"].split()[0])
    ok = subprocess.run([str(exe), *hook["entry"].split()[1:], str(DEMO)], capture_output=True, text=True)
    bad = subprocess.run([str(exe), *hook["entry"].split()[1:], str(CASES / "invalid" / "03-port-clash")],
                         capture_output=True, text=True)
    assert (ok.returncode, bad.returncode) == (0, 1)


def test_github_workflow_calls_plan_with_flags_that_exist() -> None:
    from controller.cli import build_parser
    workflow = yaml.safe_load((ROOT / "manifests" / "github-actions" / "plan.yml").read_text())
    (script,) = [s["run"] for s in workflow["jobs"]["plan"]["steps"] if s.get("id") == "plan"]
    command = " ".join(script.split("llm-gitops plan", 1)[1].split(">")[0].replace("\\\n", " ").split())
    argv = ["plan", *command.replace('"${args[@]}"', "--path sub").replace('"', "").split()]
    args = build_parser().parse_args(argv)
    assert (args.format, args.detailed_exitcode, args.path) == ("markdown", True, "sub")


def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "providers.yaml").write_bytes(b"providers:\n  a:\n    models: [\xff]\n")
    assert main(["validate", str(tmp_path)]) == 1
    assert f"{tmp_path}/providers.yaml:3: not UTF-8 text (byte 0xff); save the file as UTF-8" in capsys.readouterr().err


def test_github_workflow_shell_steps_parse() -> None:
    workflow = yaml.safe_load((ROOT / "manifests" / "github-actions" / "plan.yml").read_text())
    for step in workflow["jobs"]["plan"]["steps"]:
        if "run" in step:
            result = subprocess.run(["bash", "-n"], input=step["run"], capture_output=True, text=True)
            assert result.returncode == 0, (step.get("name"), result.stderr)


def test_editors_flag_what_litellm_cannot_do() -> None:
    schema = json.loads((ROOT / "schema" / "model-mappings.schema.json").read_text())
    jsonschema.validate({"exact_matches": {}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"routing_rules": [{"if": "x", "use": "y"}]}, schema)
