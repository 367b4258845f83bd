"""Structured logs of a pass (structlog): readable lines on a terminal, JSON lines otherwise.

Edge of the pipeline: `apply`, `reconcile` and `loop` call an `emit(event, **fields)`
function; this module makes one. Fields are container names, ids, commits, reasons: never
env values. The event name is the step (`starting`, `waiting`, `healthy`, `config_swapped`,
`rollback_start`...). Between `pass_start` and `pass_end` every line also carries the pass's
`commit` and `pass_id`, so one pass can be followed with `grep` or `jq` in the journal.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

import structlog

from controller.apply import Emit


def emitter(stream: TextIO | None = None, *, json: bool | None = None, quiet_noops: bool = False) -> Emit:
    """`quiet_noops` (the loop): a drift check that found nothing to do writes no line, so
    the journal holds what changed, not a heartbeat every minute (`/metrics` counts them)."""
    out = stream or sys.stderr
    as_json = not out.isatty() if json is None else json
    renderer: Any = (structlog.processors.JSONRenderer() if as_json
                     else structlog.dev.ConsoleRenderer(colors=False, pad_event_to=16))
    logger = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="%H:%M:%S" if not as_json else "iso", utc=as_json),
                    renderer])

    local = threading.local()   # per thread: an HTTP thread's line is not the pass's

    def ctx() -> dict[str, Any]:
        if not hasattr(local, "context"):
            local.context, local.held = {}, []
        return local.context

    def emit(event: str, level: str = "info", **fields: Any) -> None:
        context = ctx()
        held: list[tuple[str, str, dict[str, Any]]] = local.held   # a drift pass's start, until it proves not a no-op
        if event == "pass_start":
            context.clear()
            context.update(commit=fields.get("commit"), pass_id=fields.get("pass_id"))
            if quiet_noops and fields.get("trigger") == "drift":
                held[:] = [(event, level, {**context, **fields})]
                return
        if held:
            # a drift check that found nothing to do, or that only found the head still quarantined
            if event == "pass_end" and (fields.get("outcome") == "no-op"
                                        or fields.get("outcome") == "skipped" and fields.get("quiet")):
                held.clear()
                context.clear()
                return
            for e, lv, f in held:
                getattr(logger, lv)(e, **f)
            held.clear()
        getattr(logger, level)(event, **{**context, **fields})
        if event == "pass_end":
            context.clear()

    return emit
