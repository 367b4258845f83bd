"""Structured logs of a pass (structlog): readable lines on a terminal, JSON lines otherwise.

Edge of the pipeline: `apply`, `reconcile` and `loop` call an `emit(event, **fields)`
function; this module makes one. Fields are container names, ids, commits, reasons: never
env values. The event name is the step (`starting`, `waiting`, `healthy`, `config_swapped`,
`rollback_start`...). Between `pass_start` and `pass_end` every line also carries the pass's
`commit` and `pass_id`, so one pass can be followed with `grep` or `jq` in the journal.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import structlog

from controller.apply import Emit


def emitter(stream: TextIO | None = None, *, json: bool | None = None) -> Emit:
    out = stream or sys.stderr
    as_json = not out.isatty() if json is None else json
    renderer: Any = (structlog.processors.JSONRenderer() if as_json
                     else structlog.dev.ConsoleRenderer(colors=False, pad_event_to=16))
    logger = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="%H:%M:%S" if not as_json else "iso", utc=as_json),
                    renderer])

    context: dict[str, Any] = {}

    def emit(event: str, level: str = "info", **fields: Any) -> None:
        if event == "pass_start":
            context.clear()
            context.update(commit=fields.get("commit"), pass_id=fields.get("pass_id"))
        getattr(logger, level)(event, **{**context, **fields})
        if event == "pass_end":
            context.clear()

    return emit
