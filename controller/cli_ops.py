"""The acting commands of `llm-gitops`: apply, plan --live, status, history, rollback, retry.

Composition root for one pass (ARCHITECTURE.md): builds the adapters (git source, Docker
runtime, probes, state dir, structured log) and hands them to `Reconciler`. `cli.py`
declares the arguments and maps errors to exit codes; this module does the wiring and
the printing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from controller import report
from controller.apply import Applier
from controller.errors import ControllerError, Fault, StateError
from controller.reconcile import PassResult, Reconciler
from controller.record import Record
from controller.render import Desired, render
from controller.review import review
from controller.spec import Loaded, load_files


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


@dataclasses.dataclass
class Wiring:
    reconciler: Reconciler
    repo: Any           # git.Repo
    head: str           # the resolved commit of --rev


def _state(state_dir: str, *, create: bool = True) -> Any:
    from controller.adapters import state
    return state.StateDir(state_dir, create=create)


CANARY_ENV = "LLM_GITOPS_CANARY"   # settings: canary (0/false/no/off: no canary)


def _wire(st: Any, repo_arg: str, rev: str | None, subdir: str, *, host_name: str | None = None,
          fetch: bool = True, repo: Any = None, sleep: Any = None, emit: Any = None,
          canary: bool | None = None) -> Wiring:
    """The adapters for a pass. With `fetch`, call it holding the state dir's lock: a URL is
    fetched into it. `repo`: the loop's `GitSource` (its repository is opened lazily, so a
    remote that is down at start does not stop the controller); `sleep`: the loop's
    cancellable sleep for health waits."""
    import time

    from controller.adapters import docker as docker_adapter
    from controller.adapters import log, probe, source

    if repo is None:
        opened = source.open_source(repo_arg, st.path, fetch=fetch)
        repo_of = lambda: opened  # noqa: E731
    else:
        repo_of = lambda: repo.repo  # noqa: E731
    head = source.resolve(repo_of(), rev) if rev else ""

    def load(commit: str) -> Loaded:
        return load_files(source.read_commit(repo_of(), commit, subdir))

    environ = dict(os.environ)
    runtime = docker_adapter.DockerRuntime(gateway_dir=st.gateway_dir, environ=environ, owner=st.owner_id(create=fetch),
                                           state_dir=str(st.path))
    prober = probe.NetProber(environ=environ)
    emit = emit or log.emitter()
    if canary is None:  # apply/retry/rollback: the environment's setting (run passes its resolved one)
        canary = environ.get(CANARY_ENV, "1").strip().lower() not in ("0", "false", "no", "off")
    reconciler = Reconciler(
        runtime=runtime, prober=prober, store=st, config=st, load=load,
        fingerprints=lambda names: st.fingerprints(names, environ), environ=environ, emit=emit,
        applier=Applier(runtime=runtime, prober=prober, config=st, emit=emit, sleep=sleep or time.sleep,
                        canary=canary),
        host_name=host_name, is_ancestor=lambda a, b: source.is_ancestor(repo_of(), a, b),
        sleep=sleep or time.sleep)
    return Wiring(reconciler, repo_of() if repo is None else None, head)


def _remember_source(st: Any, repo: str, rev: str, path: str, host_name: str | None) -> None:
    from controller.adapters import source
    rec = st.record()
    where = repo if source.is_url(repo) else str(Path(repo).resolve())
    if (rec.repo, rec.rev, rec.path, rec.host_name) != (where, rev, path, host_name):
        st.save(dataclasses.replace(rec, repo=where, rev=rev, path=path, host_name=host_name))


def _print_result(result: PassResult, fmt: str) -> int:
    if fmt == "json":
        _out(json.dumps(result.as_dict(), indent=2))
    else:
        _out(result.line)
        for fault in result.faults:
            _out("  " + fault.format().replace("\n", "\n  "))
        if result.problems:
            _out(report.problems_text(result.problems))
    return 0 if result.ok else 1


def _not_suspended(st: Any) -> None:
    from controller.cli_run import suspended_fault
    fault = suspended_fault(st.path)
    if fault is not None:
        raise fault


def cmd_apply(args: argparse.Namespace) -> int:
    st = _state(args.state_dir)
    _not_suspended(st)
    with st.locked("apply"):
        w = _wire(st, args.repo, args.rev, args.path, host_name=args.host_name,
                  canary=False if args.no_canary else None)
        _remember_source(st, args.repo, args.rev, args.path, args.host_name)
        return _print_result(w.reconciler.run(w.head), args.format)


def _stored(st: Any) -> Record:
    rec = st.record()
    if not rec.repo:
        raise StateError(Fault(f"state dir {st.path}", "no pass has run with this state dir, so it does not know "
                               "the repository", "run `llm-gitops apply --repo ... --state-dir ...` first"))
    return rec


def cmd_retry(args: argparse.Namespace) -> int:
    from controller.cli_run import ask_loop, loop_holder
    st = _state(args.state_dir, create=False)
    _not_suspended(st)
    holder = loop_holder(st.path)
    if holder:
        return ask_loop(st.path, holder, "retry", wait_s=args.wait, fmt=args.format)
    with st.locked("retry"):
        rec = _stored(st)
        w = _wire(st, rec.repo, rec.rev or "HEAD", rec.path, host_name=rec.host_name)
        return _print_result(w.reconciler.run(w.head, retry=True), args.format)


def _rollback_target(rec: Record, repo: Any, to: str | None, force: bool, st: Any) -> str:
    from controller.adapters import source
    if to:
        target = source.resolve(repo, to)
        known_good = target == rec.last_good or target in rec.good_trail
        if not known_good and not force:
            why = (f"quarantined: {rec.quarantined[target].reason}" if target in rec.quarantined
                   else "never applied successfully by this state dir")
            raise StateError(Fault(f"commit {target[:12]}", f"is not a known good commit ({why})",
                                   "pick one from `llm-gitops history`, or pass --force to apply it anyway"))
        return target
    earlier = [c for c in rec.good_trail if c != rec.last_applied and source.is_ancestor(repo, c, c)]
    if not earlier:
        raise StateError(Fault(f"state dir {st.path}", "no earlier good commit that the repository still "
                               "has is recorded", "name one: llm-gitops rollback --to REV"))
    return earlier[0]


def cmd_rollback(args: argparse.Namespace) -> int:
    from controller.adapters import source
    from controller.cli_run import ask_loop, loop_holder
    st = _state(args.state_dir, create=False)
    _not_suspended(st)
    holder = loop_holder(st.path)
    if holder:  # the loop fetches; the commit named must already be known here
        rec = _stored(st)
        target = _rollback_target(rec, source.open_source(rec.repo, st.path, fetch=False), args.to, args.force, st)
        code = ask_loop(st.path, holder, "rollback", wait_s=args.wait, fmt=args.format, to=target)
    else:
        with st.locked("rollback"):
            rec = _stored(st)
            w = _wire(st, rec.repo, rec.rev or "HEAD", rec.path, host_name=rec.host_name)
            target = _rollback_target(rec, w.repo, args.to, args.force, st)
            code = _print_result(w.reconciler.run(w.head, pin_to=target), args.format)
    if code == 0 and args.format == "text":
        _out(f"Pinned to {target[:12]}: new commits on the branch will be applied again; "
             "`llm-gitops retry` returns to the branch head now.")
    return code


def cmd_plan_live(args: argparse.Namespace) -> int:
    """The plan against what runs now. Read-only (no lock): a URL is not fetched, the mirror
    in the state dir is read as it is."""
    st = _state(args.state_dir, create=False)
    rec = st.record()
    w = _wire(st, args.repo, args.head or "HEAD", args.path, host_name=args.host_name or rec.host_name, fetch=False)
    loaded = w.reconciler.load(w.head)
    if loaded.errors or loaded.spec is None:
        _out(f"head commit {w.head[:12]}: spec is invalid; nothing would be applied\n"
             + report.problems_text(loaded.problems))
        return 1
    desired = w.reconciler.render_desired(loaded)
    the_plan, observation = w.reconciler.plan_live(desired,
                                                   w.reconciler.changes_since(rec.last_applied, loaded, w.head))
    base: Desired | None = None
    base_warnings: list[Any] = []
    if rec.last_applied:
        try:
            old = w.reconciler.load(rec.last_applied)
            base = render(old.spec) if old.spec is not None and not old.errors else None
            base_warnings = old.warnings
        except ControllerError:  # gone from git (a force-push): no config diff, the plan still stands
            base = None
    blockers = w.reconciler.blockers(desired, the_plan, observation)
    result = review(the_plan, base, desired, head_warnings=loaded.warnings, base_warnings=base_warnings)
    preface = [f"blocked: {f.subject}: {f.message}" for f in blockers]
    if w.head in rec.quarantined:
        preface.insert(0, f"{w.head[:12]} is quarantined ({rec.quarantined[w.head].reason}): apply serves the last "
                          "good commit instead, until a newer commit or `llm-gitops retry`")
    result = dataclasses.replace(result, preface=tuple(preface))
    label = f"live ({rec.last_applied[:12]})" if rec.last_applied else "live"
    if args.format == "json":
        body = json.loads(report.plan_json(result, base=label, head=w.head))
        body["blockers"] = [f.as_dict() for f in blockers]
        _out(json.dumps(body, indent=2))
    elif args.format == "markdown":
        _out(report.plan_markdown(result, desired, base=label, head=w.head))
    else:
        _out(report.plan_text(result, base=label, head=w.head))
    if args.detailed_exitcode:
        return 1 if blockers else 2 if result.has_changes else 0
    return 1 if blockers else 0


# --------------------------------------------------------------------------- status / history


def status_of(state_dir: str) -> dict[str, Any]:
    from controller.adapters import docker as docker_adapter
    from controller.adapters import probe, source, state
    from controller.render.containers import Health

    st = state.StateDir(state_dir, create=False)
    rec = st.record()
    body: dict[str, Any] = {
        "state_dir": str(st.path), "repo": source.shown_url(rec.repo), "path": rec.path, "stack": rec.applied_stack,
        "last_attempted": rec.last_attempted, "last_applied": rec.last_applied, "last_good": rec.last_good,
        "pinned": rec.pinned, "quarantined": {c: dataclasses.asdict(q) for c, q in rec.quarantined.items()},
        "containers": [], "drift": [], "engine": "ok",
        "state_errors": [],   # files of the state dir that cannot be read, and what to do
    }
    control = state.ControlFiles(st.path)
    holder = state.lock_holder(st.path)
    running = bool(holder and ", run," in holder)
    loop: dict[str, Any] | None = None
    if running:
        try:
            loop = control.loop_state()
        except ControllerError as exc:  # the loop runs all the same: say so, and what cannot be read
            body["state_errors"].append(f"{exc} (the running controller rewrites it at its next change)")
        if loop is None:
            pid = re.match(r"pid (\d+)", holder or "")
            loop = {"pid": int(pid.group(1)) if pid else None, "state": "unknown"}
    try:
        body["suspended"] = control.suspended()
    except ControllerError as exc:  # the loop and apply take an unreadable suspend file as suspended
        body["suspended"] = {"at": None, "by": None, "reason": "its file cannot be read"}
        body["state_errors"].append(str(exc))
    body["controller"] = {"running": True, **loop} if running and loop else {"running": False, "lock": holder}
    # a pass that started applying and never recorded its end: it was killed or crashed,
    # unless it is the one running now
    body["interrupted"] = ({"commit": rec.inflight, "attempts": rec.inflight_attempts}
                           if rec.inflight and not holder else None)
    last = st.history()[-1:] or [None]
    body["last_pass"] = ({k: last[0].get(k) for k in ("commit", "outcome", "message", "started", "trigger")}
                         if last[0] else None)
    try:
        st.owner_id(create=False)
    except ControllerError as exc:
        body["state_errors"].append(str(exc))
    if not rec.applied_stack:
        return body
    prober = probe.NetProber(timeout_s=1.0)
    try:
        runtime = docker_adapter.DockerRuntime(gateway_dir=st.gateway_dir, state_dir=str(st.path))  # observes only
        seen = runtime.observe(rec.applied_stack).containers
    except ControllerError as exc:
        body["engine"] = str(exc)
        body["drift"] = None  # unknown: nothing could be observed
        return body
    names = set()
    flapping = set((body["controller"].get("flapping") or {}) if body["controller"].get("running") else ())
    for c in seen:
        names.add(c.name)
        health = "-"
        if c.running and c.spec and isinstance(c.spec.get("health"), dict):
            ok, what = prober.healthy(Health(**c.spec["health"]))
            health = "ok" if ok else f"failing ({what})"
        want = rec.applied_hashes.get(c.name)
        matches = None if c.aside else want == c.spec_hash
        body["containers"].append({
            "name": c.name, "id": c.id[:12], "state": c.state, "health": health, "revision": c.revision,
            "spec_hash": c.spec_hash[:12], "matches_applied": matches, "set_aside": c.aside})
        if c.component == "canary":
            ctl = body["controller"]
            if not (ctl.get("lock") or ctl.get("running") and ctl.get("state") == "applying"):  # no pass runs
                body["drift"].append(f"{c.name}: a gateway canary left by an interrupted pass (the next pass "
                                     "removes it)")
        elif c.aside:
            body["drift"].append(f"{c.name}: left aside by an interrupted pass (the next pass removes it)")
        elif want is None:
            body["drift"].append(f"{c.name}: not part of the applied commit")
        elif want != c.spec_hash:
            body["drift"].append(f"{c.name}: spec hash differs from the applied commit's (changed by hand?)")
        elif c.state == "restarting":
            body["drift"].append(f"{c.name}: crash-looping (the engine keeps restarting it; see docker logs {c.name})")
        elif not c.running and c.name in flapping:
            body["drift"].append(f"{c.name}: {c.state}, stopped by the flap limit and left alone (a new commit or "
                                 "`llm-gitops retry` tries it again)")
        elif not c.running:
            body["drift"].append(f"{c.name}: {c.state} (stopped by hand?)")
    for name in sorted(set(rec.applied_hashes) - names):
        body["drift"].append(f"{name}: missing (removed by hand?)")
    if rec.applied_config_digest and st.live_digest() != rec.applied_config_digest:
        body["drift"].append("gateway config file differs from the applied commit's (edited by hand?)")
    return body


def cmd_status(args: argparse.Namespace) -> int:
    body = status_of(args.state_dir)
    if args.format == "json":
        _out(json.dumps(body, indent=2))
        return 0
    short = lambda c: c[:12] if c else "-"  # noqa: E731
    lines = [f"state dir       {body['state_dir']}",
             f"repo            {body['repo'] or '-'}" + (f"  (path {body['path']})" if body['path'] else ""),
             f"stack           {body['stack'] or '-'}",
             f"last applied    {short(body['last_applied'])}",
             f"last good       {short(body['last_good'])}",
             f"last attempted  {short(body['last_attempted'])}"]
    ctl = body["controller"]
    if ctl.get("running"):
        lines.append(f"controller      running (pid {ctl.get('pid')}, {ctl.get('state')}"
                     + (f", http {ctl['http']}" if ctl.get("http") else "") + ")")
        if ctl.get("source_error"):
            lines.append(f"source          {ctl['source_error']}")
        if ctl.get("failures_in_a_row"):
            lines.append(f"backoff         {ctl['failures_in_a_row']} failed pass(es) in a row; next try at "
                         f"{ctl.get('next_try_at')}")
        for name, f in (ctl.get("flapping") or {}).items():
            lines.append(f"flapping        {name}: restarted {f.get('restarts')} times within {f.get('window_s')} s; "
                         "stopped and left alone until a new commit or `llm-gitops retry`")
    else:
        lines.append("controller      not running" + (f" (state dir held by {ctl['lock']})" if ctl.get("lock") else ""))
    if body.get("suspended"):
        sus = body["suspended"]
        said = [f"since {sus.get('at')} by {sus.get('by')}"] if sus.get("at") else []
        said += [str(sus["reason"])] if sus.get("reason") else []
        lines.append(f"suspended       {': '.join(said)}  (`llm-gitops resume` ends it)")
    if body.get("interrupted"):
        lines.append(f"interrupted     {short(body['interrupted']['commit'])}: a pass started applying it and did not "
                     "finish (killed or crashed?); the next pass goes on from what runs")
    if body["pinned"]:
        lines.append(f"pinned          {short(body['pinned'])}  (rollback; `llm-gitops retry` unpins)")
    for commit, q in body["quarantined"].items():
        lines.append(f"quarantined     {short(commit)}  since {q['at']}: {q['reason']}")
    if body["quarantined"]:
        lines.append("                (not tried again until a newer commit or `llm-gitops retry`)")
    if body["last_pass"]:
        lp = body["last_pass"]
        by = f" ({lp['trigger']})" if lp.get("trigger") not in (None, "apply") else ""
        lines.append(f"last pass       {lp['started']}{by} {short(lp['commit'])} {_said(lp['outcome'], lp['message'])}")
    for error in body.get("state_errors") or ():
        lines.append("state error     " + error.replace("\n", "\n                "))
    if body["engine"] != "ok":
        lines.append(f"engine          {body['engine']}")
    if body["containers"]:
        lines.append("")
        rows = [("CONTAINER", "STATE", "HEALTH", "REVISION", "SPEC")]
        for c in body["containers"]:
            spec = "set aside" if c["set_aside"] else "matches" if c["matches_applied"] else "DIFFERS"
            rows.append((c["name"], c["state"], c["health"], short(c["revision"]), spec))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines += ["  ".join(v.ljust(widths[i]) if i < 4 else v for i, v in enumerate(r)).rstrip() for r in rows]
    lines.append("")
    if body["drift"] is None:
        lines.append("drift: unknown (the engine does not answer)")
    else:
        lines.append("drift: none" if not body["drift"] else "drift:\n" + "\n".join(f"  {d}" for d in body["drift"])
                     + ("\n  (suspended: nothing is put back until `llm-gitops resume`)" if body.get("suspended")
                        else "\n  (the running controller puts it back at its next drift check)" if ctl.get("running")
                        else "\n  (`llm-gitops apply` puts it back as the applied commit says)"))
    _out("\n".join(lines))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    entries = _state(args.state_dir, create=False).history()[-args.limit:]
    if args.format == "json":
        _out(json.dumps(entries, indent=2))
        return 0
    if not entries:
        _out("no passes yet")
        return 0
    for e in entries:
        by = f"{e.get('trigger')}: " if e.get("trigger") not in (None, "apply") else ""
        _out(f"{e.get('started', '?')}  {str(e.get('commit', ''))[:12]}  {e.get('duration_s', 0):>6.1f}s  "
             f"{by}{_said(str(e.get('outcome', '?')), str(e.get('message', '')))}")
    return 0



def _said(outcome: str, message: str) -> str:
    """`failed: ...` once, not `failed failed: ...`."""
    return message if message.startswith(outcome) else f"{outcome}: {message}"
