"""`llm-gitops run` (the loop), `suspend` and `resume`; and `retry`/`rollback` as requests
to a running loop.

Composition root of the unattended controller: resolves the settings (file < environment <
flags), takes the state dir's lock for the life of the process, builds the git source, the
adapters of one pass (`cli_ops._wire`) with a cancellable sleep, the watcher, the poller and
the HTTP endpoint, and runs `controller.loop.Loop` in the main thread until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from controller import settings as settings_mod
from controller.errors import Fault, StateError
from controller.loop import Loop, LoopSettings, Pacer
from controller.settings import Resolved, Settings, SettingsError


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


# --------------------------------------------------------------------------- settings


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting, each documented with its variable and default."""
    parser.add_argument("--config", metavar="FILE",
                        help=f"settings file (default: $LLM_GITOPS_CONFIG, else ./{settings_mod.DEFAULT_FILE} "
                        "when it exists)")
    for name, info in Settings.model_fields.items():
        default = info.default
        shown = "unset" if default is None else "''" if default == "" else default
        helptext = f"{info.description} [env {settings_mod.env_name(name)}; default: {shown}]"
        flag = settings_mod.flag_name(name)
        if info.annotation is bool or str(info.annotation) == "bool":
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=helptext)
        else:
            metavar = "SECONDS" if name.endswith("_s") else {"repo": "PATH_OR_URL", "state_dir": "DIR",
                                                               "path": "SUBDIR", "flap_limit": "N",
                                                               "http_port": "PORT|off"}.get(name, name.upper())
            parser.add_argument(flag, dest=name, default=None, metavar=metavar, help=helptext)


def resolve_settings(args: argparse.Namespace) -> Resolved:
    path = args.config or os.environ.get("LLM_GITOPS_CONFIG")
    text, name = None, settings_mod.DEFAULT_FILE
    if path:
        try:
            text, name = Path(path).read_text(), str(path)
        except OSError as exc:
            raise SettingsError(f"{path}: cannot read the settings file: {exc.strerror or exc}") from None
    elif Path(settings_mod.DEFAULT_FILE).is_file():
        text = Path(settings_mod.DEFAULT_FILE).read_text()
    flags = {f: getattr(args, f, None) for f in settings_mod.FIELDS}
    resolved = settings_mod.resolve(text, name, os.environ, flags)
    missing = [f for f in ("repo", "state_dir") if getattr(resolved.settings, f) is None]
    if missing:
        raise SettingsError("; ".join(f"{settings_mod.flag_name(f)} is required (or {settings_mod.env_name(f)}, or "
                                      f"`{f}:` in the settings file)" for f in missing))
    return resolved


# --------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    from controller.adapters import http, log, source, state, watch
    from controller.cli_ops import _remember_source, _wire, status_of

    resolved = resolve_settings(args)
    s = resolved.settings
    assert s.repo is not None and s.state_dir is not None
    emit = log.emitter(json=None if s.log_format == "auto" else s.log_format == "json", quiet_noops=True)
    st = state.StateDir(s.state_dir)
    control = state.ControlFiles(st.path)
    with st.locked("run"):
        src = source.GitSource(s.repo, st.path, s.branch, strict=st.record().last_applied is None)
        pacer = Pacer()
        w = _wire(st, s.repo, None, s.path, host_name=s.host_name, repo=src, sleep=pacer.sleep, emit=emit,
                  canary=s.canary)
        _remember_source(st, s.repo, s.branch, s.path, s.host_name)
        if s.require_signed:
            w.reconciler.verify = lambda c: src.verify(c, allowed_signers=s.allowed_signers, gpg_home=s.gpg_home)
        runtime = w.reconciler.runtime

        def restart_counts() -> dict[str, tuple[str, int]]:
            stack = st.record().applied_stack
            if not stack:
                return {}
            out = {}
            for c in runtime.observe(stack).containers:
                if not c.aside:
                    out[c.name] = (c.id, runtime.state(c.id).restart_count)
            return out

        loop = Loop(reconciler=w.reconciler, source=src, control=control, emit=emit, pacer=pacer,
                    settings=LoopSettings(drift_interval_s=s.drift_interval_s, backoff_initial_s=s.backoff_initial_s,
                                          backoff_max_s=s.backoff_max_s, flap_limit=s.flap_limit,
                                          flap_window_s=s.flap_window_s),
                    restart_counts=restart_counts, halt=runtime.halt)
        stop = threading.Event()
        poller = watch.Poller(loop, src, s.poll_interval_s, stop)
        threads: list[threading.Thread] = [poller]
        if s.watch and src.url is None:
            threads.append(watch.RefWatcher(loop, src, src.git_dir, stop))
        server = None
        if s.http_port != "off":
            from controller import metrics

            def healthz() -> tuple[int, dict[str, Any]]:
                snap = loop.snapshot()
                ok = snap["stopping"] is None
                return (200 if ok else 503), {"ok": ok, "state": snap["state"], "since": snap["since"]}

            def status() -> dict[str, Any]:
                return {**status_of(str(st.path)), "controller": loop.snapshot()}

            def metrics_text() -> str:
                snap = loop.snapshot()
                return metrics.render(loop.stats, quarantined=len(st.record().quarantined),
                                      suspended=snap["suspended"] is not None, flapping=snap["flapping"],
                                      failures=snap["failures_in_a_row"], up_since=loop.started_at)

            def secret() -> bytes | None:
                value = os.environ.get(s.webhook_secret_env, "")
                return value.encode() if value else None

            try:
                server = http.serve(http.Endpoints(healthz=healthz, status=status, metrics=metrics_text,
                                                   push=poller.poke, secret=secret, branch=s.branch, emit=emit),
                                    int(s.http_port))
            except OSError as exc:
                raise StateError(Fault(f"http 127.0.0.1:{s.http_port}", f"cannot listen: {exc.strerror or exc}",
                                       "pick another --http-port (0: any free port), or `off`")) from None
            loop.http = f"127.0.0.1:{server.server_port}"
        given = {k: v for k, v in resolved.origins.items() if v != "default"}
        emit("settings", **{k: _shown(k, getattr(s, k)) for k in given}, origins=given)
        emit("controller_ready", repo=src.shown, branch=s.branch, state_dir=str(st.path), http=loop.http,
             watching=bool(s.watch and src.url is None), poll_interval_s=s.poll_interval_s,
             webhook="enabled" if os.environ.get(s.webhook_secret_env) else "disabled (no secret)")

        def on_signal(signum: int, _frame: Any) -> None:
            # Not in the handler itself: it runs inside whatever the main thread was doing,
            # which may hold the log's write lock; a thread takes the locks as any other.
            threading.Thread(target=loop.stop, args=(signal.Signals(signum).name,), daemon=True).start()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        for t in threads:
            t.start()
        try:
            loop.run()
        finally:
            stop.set()
            poller.poke()
            if server is not None:
                server.shutdown()
                server.server_close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    emit("lock_released", state_dir=str(st.path))
    return 0


def _shown(key: str, value: Any) -> Any:
    if key == "repo" and isinstance(value, str):
        from controller.adapters import source
        return source.shown_url(value)
    return value


# --------------------------------------------------------------------------- suspend / resume


def cmd_suspend(args: argparse.Namespace) -> int:
    from controller.adapters import state
    st = state.StateDir(args.state_dir, create=False)
    body = state.ControlFiles(st.path).suspend(args.reason)
    _out(f"suspended at {body['at']}: a running `llm-gitops run` makes no change (not even drift repair) until "
         "`llm-gitops resume`; a pass in progress finishes first")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from controller.adapters import state
    st = state.StateDir(args.state_dir, create=False)
    if state.ControlFiles(st.path).resume():
        _out("resumed: the controller converges to the branch head now")
    else:
        _out("not suspended; nothing to do")
    return 0


def suspended_fault(state_dir: Path) -> StateError | None:
    """A manual pass while suspended is refused, naming who suspended it and why."""
    from controller.adapters import state
    body = state.ControlFiles(state_dir).suspended()
    if body is None:
        return None
    return StateError(Fault(f"state dir {state_dir}", f"suspended since {body.get('at')} by {body.get('by')}"
                            + (f" ({body.get('reason')})" if body.get("reason") else ""),
                            "`llm-gitops resume` first"))


# --------------------------------------------------------------------------- requests to a running loop


def loop_holder(state_dir: Path) -> str | None:
    """Who holds the lock, when it is a running `llm-gitops run`."""
    from controller.adapters import state
    holder = state.lock_holder(state_dir)
    return holder if holder and ", run," in holder else None


def ask_loop(state_dir: Path, holder: str, action: str, *, wait_s: float, fmt: str, **fields: Any) -> int:
    """Queue `retry`/`rollback` for the loop that holds the lock, and wait for its answer."""
    from controller.adapters import state
    control = state.ControlFiles(state_dir)
    rid = control.put_request(action, **fields)
    if fmt == "text":
        _out(f"asked the running controller ({holder}) to {action}; waiting for its pass (request {rid})")
    deadline = time.monotonic() + wait_s
    try:
        while time.monotonic() < deadline:
            answer = control.answer(rid)
            if answer is not None:
                if fmt == "json":
                    _out(json.dumps(answer, indent=2))
                else:
                    commit = str(answer.get("commit") or "")
                    _out(f"{commit[:12]}: {answer.get('message')}" if commit else str(answer.get("message")))
                return 0 if answer.get("ok") else 1
            time.sleep(0.3)
    except KeyboardInterrupt:
        _out("stopped waiting; the request stays queued (see `llm-gitops history`)")
        return 130
    _out(f"no answer within {wait_s:.0f} s; the request stays queued and runs when the controller is free "
         "(see `llm-gitops status`)")
    return 1
