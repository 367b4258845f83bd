"""The `llm-gitops` command: argparse subcommands, the composition root, errors -> exit codes.

The only module that wires the pure core (spec, render, plan, report) to the adapters.
Exit codes: 0 success, 1 a problem in the user's input, a failed operation or a usage
error (the message says what and where), and for `plan --detailed-exitcode` 0 no changes /
2 changes / 1 error, like `terraform plan`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml

from controller import __version__, report
from controller.errors import ControllerError, Problem, SpecInvalid
from controller.plan import actual_from, spec_changes
from controller.plan import plan as make_plan
from controller.render import render
from controller.render.litellm import DUMPER
from controller.review import review
from controller.spec import FILES, PROVIDERS, Loaded, load_files, models

SCHEMA_MODELS = {"providers.yaml": models.ProvidersFile, "model-mappings.yaml": models.MappingsFile,
                 "stack.yaml": models.StackFile}
EMPTY_BASE = "none"  # `--base none`: plan as if nothing ran yet


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(f"llm-gitops: {text}\n")


# --------------------------------------------------------------------------- validate / render


def _load_dir(directory: str) -> Loaded:
    # adapters are imported where used: importing gitpython costs validate a tenth of a second
    from controller.adapters import source
    return load_files(source.read_dir(directory))


def cmd_validate(args: argparse.Namespace) -> int:
    loaded = _load_dir(args.dir)
    _out(report.problems_text([_located(p, args.dir) for p in loaded.problems]))
    if loaded.errors:
        if not loaded.rules_ran:
            _out("References, ports, GPUs, secrets and policy are checked once these are fixed.")
        _out(f"{args.dir}: invalid; nothing would be applied")
        return 1
    _out(f"{args.dir}: valid")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    loaded = _load_dir(args.dir)
    if loaded.errors or loaded.spec is None:
        sys.stderr.write(report.problems_text([_located(p, args.dir) for p in loaded.problems]) + "\n")
        return 1
    body = render(loaded.spec).as_dict()
    if args.format == "json":
        _out(json.dumps(body, indent=2))
    else:
        _out(yaml.dump(body, Dumper=DUMPER, sort_keys=False, width=100))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    schemas = {name: schema_of(name) for name in FILES}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, schema in schemas.items():
            target = out / (name.removesuffix(".yaml") + ".schema.json")
            target.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
            _out(f"wrote {target}")
        return 0
    _out(json.dumps(schemas, indent=2, sort_keys=True))
    return 0


def schema_of(filename: str) -> dict[str, Any]:
    schema = SCHEMA_MODELS[filename].model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"llm-gitops {filename}"
    return schema


# --------------------------------------------------------------------------- plan


def _at(repo: Any, rev: str, subdir: str) -> Loaded:
    from controller.adapters import source
    return load_files(source.read_commit(repo, rev, subdir))


def _base(repo: Any, rev: str, subdir: str) -> tuple[str, Loaded | None, list[str]]:
    """What to plan from: the base commit if its spec is valid, else its nearest valid
    first-parent ancestor (what a controller would still be running), else nothing."""
    from controller.adapters import source

    files = source.read_commit(repo, rev, subdir, missing_ok=True)
    loaded = load_files(files)
    if not loaded.errors:
        return rev, loaded, []
    where = f" at {subdir}" if subdir else ""
    why = (f"The base commit {rev[:12]} has no spec{where}" if PROVIDERS not in files
           else f"The base commit {rev[:12]} is itself invalid ({len(loaded.errors)} error(s))")
    for ancestor in source.ancestors(repo, rev, limit=50):
        older = load_files(source.read_commit(repo, ancestor, subdir, missing_ok=True))
        if older.spec is not None and not older.errors:
            return ancestor, older, [f"{why}; this plan starts from its nearest valid ancestor {ancestor[:12]}, "
                                     "which is what a controller would still be running."]
    if PROVIDERS not in files:
        return rev, None, [f"{why} yet; this plan starts from nothing."]
    return rev, None, [f"{why} and has no valid ancestor; this plan starts from nothing."]


def cmd_plan(args: argparse.Namespace) -> int:
    from controller.adapters import source

    if args.live:
        if not args.state_dir or args.base:
            raise UsageError("plan --live needs --state-dir and takes no --base (the base is what runs)")
        from controller import cli_ops
        return cli_ops.cmd_plan_live(args)
    if not args.base or not args.head:
        raise UsageError("plan needs --base and --head (or --live --state-dir DIR to plan against what runs)")

    repo = source.open_repo(args.repo)
    head_rev = source.resolve(repo, args.head)
    head = _at(repo, head_rev, args.path)
    if head.errors or head.spec is None:
        return _plan_invalid(args, head_rev, head.problems)
    head_desired = render(head.spec)
    base_rev, base, preface = EMPTY_BASE, None, []
    if args.base != EMPTY_BASE:
        base_rev, base, preface = _base(repo, source.resolve(repo, args.base), args.path)
    base_desired = render(base.spec) if base is not None and base.spec is not None else None
    steps = make_plan(head_desired, actual_from(base_desired),
                      changes=spec_changes(dict(base.raw) if base else {}, dict(head.raw)))
    result = review(steps, base_desired, head_desired, head_warnings=head.warnings,
                    base_warnings=base.warnings if base else ())
    result = dataclasses.replace(result, preface=tuple(preface),
                                 warnings=tuple(_located(w, args.path) for w in result.warnings))
    if args.format == "json":
        _out(report.plan_json(result, base=base_rev, head=head_rev))
    elif args.format == "markdown":
        _out(report.plan_markdown(result, head_desired, base=base_rev, head=head_rev))
    else:
        _out(report.plan_text(result, base=base_rev, head=head_rev))
    if args.detailed_exitcode:
        return 2 if result.has_changes else 0
    return 0


def _located(problem: Problem, directory: str) -> Problem:
    """A problem whose file is named from where the user stands (`specs/gpu-1/providers.yaml`),
    so that editors, terminals and PR reviewers can jump to it."""
    directory = directory.strip()
    if directory in ("", "."):
        return problem
    return dataclasses.replace(problem, file=f"{directory.rstrip('/')}/{problem.file}")


def _plan_invalid(args: argparse.Namespace, head_rev: str, problems: list[Problem]) -> int:
    where = f"head commit {head_rev[:12]}" + (f" ({args.path})" if args.path else "")
    problems = [_located(p, args.path) for p in problems]
    if args.format == "json":
        _out(json.dumps({"base": args.base, "head": head_rev, "error": f"{where}: spec is invalid",
                         "problems": [p.as_dict() for p in problems]}, indent=2))
    elif args.format == "markdown":
        _out("\n".join([report.MARKER, f"### llm-gitops plan: `{head_rev[:12]}` is invalid", "",
                        "Nothing would be applied. Fix these:", "", "```",
                        report.problems_text(problems), "```", ""]))
    else:
        _out(f"{where}: spec is invalid; nothing would be applied\n" + report.problems_text(problems))
    return 1


# --------------------------------------------------------------------------- wiring


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


class UsageError(ControllerError):
    """Arguments that parse but do not make sense together."""


def _ops(name: str) -> Any:
    """A command of controller.cli_ops, imported when run (docker and git load only then)."""
    def run(args: argparse.Namespace) -> int:
        from controller import cli_ops
        return int(getattr(cli_ops, name)(args))
    return run


def _run(name: str) -> Any:
    """A command of controller.cli_run, imported when run."""
    def run(args: argparse.Namespace) -> int:
        from controller import cli_run
        return int(getattr(cli_run, name)(args))
    return run


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1, not argparse's 2: under `plan --detailed-exitcode` 2 means
    "changes", and a mistyped flag in CI must not read as success."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # `--detailed-exitcod` is a typo, not a flag
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an unexpected error")
    parser = _Parser(
        prog="llm-gitops", parents=[common],
        description="GitOps for self-hosted LLM inference: git is the only way to change the stack.",
        epilog="Exit codes: 0 success, 1 a problem (listed) or a usage error; "
               "`plan --detailed-exitcode`: 0 no changes, 2 changes, 1 error.")
    parser.add_argument("--version", action="version", version=f"llm-gitops {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = functools.partial(sub.add_parser, parents=[common])

    p = add("validate", help="check a spec directory against every rule",
                       description="Check providers.yaml, model-mappings.yaml and stack.yaml. Exit 0 when "
                       "valid (warnings are printed), 1 with every problem listed as file:line:column.")
    p.add_argument("dir", nargs="?", default=".", help="the spec directory (default: .)")
    p.set_defaults(func=cmd_validate)

    p = add("render", help="print the LiteLLM config and container specs a spec directory gives",
                       description="Print {litellm_config, containers} for a valid spec directory. "
                       "Secret values never appear; only the names of the variables that hold them.")
    p.add_argument("dir", nargs="?", default=".", help="the spec directory (default: .)")
    p.add_argument("--format", choices=("yaml", "json"), default="yaml")
    p.set_defaults(func=cmd_render)

    p = add("plan", help="what changes between two commits of a spec repo (no Docker needed)",
                       description="Compare the spec at --base with the spec at --head: per container "
                       "create/recreate/remove/unchanged with the file and field that caused it, the "
                       "LiteLLM config diff, public models added/removed/re-routed, warnings and impact.")
    p.add_argument("--repo", required=True, help="path of the git repository (or any directory inside it)")
    p.add_argument("--base", help=f"the revision running now, or `{EMPTY_BASE}` for an empty host")
    p.add_argument("--head", help="the revision to apply (with --live: default HEAD)")
    p.add_argument("--path", default="", help="the spec directory, relative to the repository's top (default: the top)")
    p.add_argument("--live", action="store_true",
                   help="plan against what runs now on this host's Docker engine instead of --base "
                        "(needs --state-dir); also lists what would block the plan")
    p.add_argument("--state-dir", help="with --live: the controller's state directory")
    p.add_argument("--host-name", help="with --live: this host's name (default: the one apply was given)")
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    p.add_argument("--detailed-exitcode", action="store_true",
                   help="exit 0 when nothing changes, 2 when something does, 1 on error")
    p.set_defaults(func=cmd_plan)

    def state_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--state-dir", required=True,
                       help="the controller's state directory: lock, revision record, history, gateway config")

    def fmt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--format", choices=("text", "json"), default="text")

    def wait(p: argparse.ArgumentParser) -> None:
        p.add_argument("--wait", type=_positive, default=900, metavar="SECONDS",
                       help="when `llm-gitops run` holds the state dir: how long to wait for its answer "
                       "(default: 900)")

    p = add("apply", help="one reconcile pass: make the Docker engine run what a commit describes",
            description="Load and check the spec at --rev, plan against what runs, and converge: stage and swap "
            "the gateway config, recreate what diverged, gate every started container on its health. On failure, "
            "go back to the last good commit and quarantine the failed one (not tried again until a newer commit "
            "or `llm-gitops retry`). Exit 0 applied or nothing to do, 1 failed, blocked, invalid or quarantined.",
            epilog="Environment: every secret the spec names (secret_env, the gateway's master_key_env, provider "
            "keys) is read from the controller's environment and passed only to the containers that need it. "
            "DOCKER_HOST selects the engine. LLM_GITOPS_NO_GPU_REQUESTS=1 on hosts without NVIDIA's container "
            "toolkit: GPU ids stay exclusive in plans, but no device is requested. LLM_GITOPS_CANARY=0 is "
            "--no-canary (also for retry and rollback). Logs go to stderr: readable on a terminal, JSON lines "
            "otherwise.")
    p.add_argument("--repo", required=True, help="the spec repository: a local path, or a URL (mirrored into the "
                   "state dir)")
    p.add_argument("--rev", default="HEAD", help="the revision to apply: a branch, tag or commit (default: HEAD)")
    p.add_argument("--path", default="", help="the spec directory inside the repository (default: the top)")
    state_dir(p)
    p.add_argument("--host-name", help="this host's name: providers placed on other hosts (container.host) are left "
                   "to their own controllers")
    p.add_argument("--no-canary", action="store_true",
                   help="do not prove a changed gateway config on a canary gateway before the swap (saves a second "
                   "gateway boot; a bad config is then found only after the live gateway restarted)")
    fmt(p)
    p.set_defaults(func=_ops("cmd_apply"))

    p = add("status", help="revisions, containers (state, health, revision, spec match) and drift",
            description="What the state dir records and what runs now: last applied/good/attempted commits, "
            "quarantined commits, each managed container with its state, health, revision and whether its spec "
            "hash matches the applied commit, and drift.")
    state_dir(p)
    fmt(p)
    p.set_defaults(func=_ops("cmd_status"))

    p = add("history", help="the passes this state dir has run, oldest first",
            description="One line per pass that changed, tried or refused something: when, which commit, outcome, "
            "duration and what happened. A pass with nothing to do writes nothing.")
    state_dir(p)
    p.add_argument("--limit", type=_positive, default=50, help="show the last N passes (default: 50)")
    fmt(p)
    p.set_defaults(func=_ops("cmd_history"))

    p = add("rollback", help="go back to an earlier good commit and stay there",
            description="Apply --to REV (default: the good commit before the one applied now) and pin it: the "
            "branch head is not applied again until a newer commit arrives or `llm-gitops retry`.")
    state_dir(p)
    p.add_argument("--to", help="the revision to go back to (default: the previous good commit)")
    p.add_argument("--force", action="store_true",
                   help="apply --to even if it is not a commit this state dir applied successfully")
    wait(p)
    fmt(p)
    p.set_defaults(func=_ops("cmd_rollback"))

    p = add("retry", help="forget quarantined commits and any pin, and apply the branch head again",
            description="Clears the quarantine, the rollback pin and the flap limit's list, then runs one pass on "
            "the recorded repo and revision, as `apply` would. With `llm-gitops run` holding the state dir, "
            "the request is queued for it and this command waits for the answer.")
    state_dir(p)
    wait(p)
    fmt(p)
    p.set_defaults(func=_ops("cmd_retry"))

    p = add("run", help="the controller: watch the branch and converge, unattended, until SIGTERM",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            description="Converge to the head of --branch and keep it so: a commit starts a pass (a local repo is "
            "watched, a URL polled with `git ls-remote`, or pushed to POST /hooks/git); what runs is checked for "
            "drift every drift_interval_s and put back; failures back off; a container restarted too often is "
            "stopped and left alone. Passes never overlap; a newer commit cancels a health wait. SIGTERM or SIGINT "
            "stops at a safe point and exits 0. Serves /healthz, /status and /metrics on 127.0.0.1.\n\n"
            "Every setting comes from, in order of precedence: the flag, the environment variable "
            "(LLM_GITOPS_<SETTING>), the settings file (--config), the default.",
            epilog="`llm-gitops suspend` / `resume` hold and release changes without stopping it; `retry` and "
            "`rollback` are passed to it. Secrets (the master key, provider keys, the webhook secret) come from "
            "the environment only. See manifests/ for a systemd unit, a Dockerfile and an example settings file.")
    from controller.cli_run import add_settings_flags
    add_settings_flags(p)
    p.set_defaults(func=_run("cmd_run"))

    p = add("suspend", help="hold every change (also drift repair) of a running controller, until `resume`",
            description="Writes `suspended` into the state dir. A running `llm-gitops run` finishes the pass in "
            "progress, then changes nothing until `llm-gitops resume`; `apply`, `retry` and `rollback` refuse. "
            "The stack keeps running; the engine still restarts crashed containers.")
    state_dir(p)
    p.add_argument("--reason", default="", help="shown by `status` (e.g. `GPU maintenance, ask alice`)")
    p.set_defaults(func=_run("cmd_suspend"))

    p = add("resume", help="release `suspend`: the controller converges to the branch head again",
            description="Removes `suspended` from the state dir; a running controller converges within a second.")
    state_dir(p)
    p.set_defaults(func=_run("cmd_resume"))

    p = add("schema", help="JSON Schema of the three spec files, for editors",
                       description="Print the JSON Schemas (or write them with --out) for "
                       "yaml-language-server: `# yaml-language-server: $schema=providers.schema.json`.")
    p.add_argument("--out", help="write providers.schema.json, model-mappings.schema.json, stack.schema.json here")
    p.set_defaults(func=cmd_schema)
    return parser


def tune_gc() -> None:
    """Collect garbage less often. Loading a spec makes many small, long-lived objects (YAML
    nodes, pydantic models); CPython's default thresholds rescan them over and over, which
    made validate + render of 5,000 providers twice as slow (`make bench`)."""
    gc.set_threshold(50_000, 20, 100)


def main(argv: Sequence[str] | None = None) -> int:
    tune_gc()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SpecInvalid as exc:
        _err(str(exc))
        sys.stderr.write(report.problems_text(exc.problems) + "\n")
        return 1
    except ControllerError as exc:
        _err(str(exc))
        return 1
    except BrokenPipeError:
        return 1
    except KeyboardInterrupt:
        _err("interrupted; nothing is left half done for long: the next pass plans from what runs and finishes it")
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if getattr(args, "debug", False):
            raise
        _err(f"unexpected error: {type(exc).__name__}: {exc} (run with --debug for the traceback, "
             "and please report it)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
