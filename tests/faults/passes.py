"""`llm-gitops apply` as its own process whose JSON log is read while it runs, so that a fault
can be injected at a given step of the pass (the moment its event is logged): a SIGKILL, a
daemon restart. Every wait is bounded; the process is always reaped."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from engine.lab import Lab

Match = Callable[[dict[str, Any]], bool]


class PassInBackground:
    def __init__(self, lab: Lab) -> None:
        self.proc = lab.apply_in_background(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[dict[str, Any]] = []
        self._trigger: tuple[str, Match, Callable[[], None]] | None = None
        self._cond = threading.Condition()
        self._out: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._out_reader = threading.Thread(target=lambda: self._out.extend(self.proc.stdout or ()), daemon=True)
        self._reader.start()
        self._out_reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # stderr is not a terminal: one JSON object per line
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"event": "(not json)", "text": line.rstrip()}
            with self._cond:
                self.lines.append(entry)
                if self._trigger is not None and self._trigger[0] == entry.get("event") and self._trigger[1](entry):
                    self._trigger[2]()  # here, in the reader, the moment the line is read
                    self._trigger = None
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, event: str, match: Match = lambda e: True, *, timeout: float = 60,
                 then: Callable[[], None] | None = None) -> dict[str, Any]:
        """The first line of `event` that `match`es; `then` runs the moment it is read, before
        the next line is (a SIGKILL lands inside the engine call or the wait that follows it)."""
        with self._cond:
            if then is not None and self._find(event, match) is None:
                self._trigger = (event, match, then)
            elif then is not None:
                then()
            self._cond.wait_for(lambda: self._find(event, match) is not None or not self._reader.is_alive(),
                                timeout=timeout)
            self._trigger = None
            found = self._find(event, match)
        if found is None:
            raise AssertionError(f"no `{event}` within {timeout} s; the pass logged: "
                                 f"{[e.get('event') for e in self.lines]}")
        return found

    def _find(self, event: str, match: Match) -> dict[str, Any] | None:
        return next((e for e in self.lines if e.get("event") == event and match(e)), None)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        """Wait for it to end (killing it after `timeout`): (exit code, stdout)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        self._out_reader.join(timeout=10)
        return self.proc.returncode, "".join(self._out)

    def __enter__(self) -> PassInBackground:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.finish(timeout=10)
