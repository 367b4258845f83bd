"""`llm-gitops run` as a real process for the loop's tests: started on a Lab's repo and state
dir with short intervals, its JSON log lines read back, its HTTP endpoint asked, and always
stopped (SIGTERM, then SIGKILL) at teardown. Every wait is bounded."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from engine.lab import Lab, wait_for


class Controller:
    def __init__(self, lab: Lab, *extra: str, repo: str | None = None, env: dict[str, str] | None = None,
                 log: Path | None = None) -> None:
        self.lab = lab
        self.log_path = log or lab.state.parent / f"run-{time.monotonic_ns()}.log"
        argv = [sys.executable, "-m", "controller", "run", "--repo", repo or str(lab.repo.path),
                "--state-dir", str(lab.state), "--http-port", "0", "--log-format", "json",
                "--drift-interval-s", "600", "--poll-interval-s", "600", "--backoff-initial-s", "1",
                "--backoff-max-s", "4", *extra]
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(argv, env={**os.environ, "PYTHONPATH": os.getcwd(), **(env or {})},
                                     stdout=self._log, stderr=subprocess.STDOUT, text=True)

    # ------------------------------------------------------------------ logs

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def events(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.lines() if e.get("event") == event
                and all(e.get(k) == v for k, v in match.items())]

    def wait_event(self, event: str, timeout: float = 60, **match: Any) -> dict[str, Any]:
        def seen() -> dict[str, Any] | None:
            if self.proc.poll() is not None and not self.events(event, **match):
                raise AssertionError(f"the controller exited ({self.proc.returncode}) before `{event}`:\n"
                                     + self.log_path.read_text()[-3000:])
            found = self.events(event, **match)
            return found[-1] if found else None
        return wait_for(seen, timeout=timeout)

    def passes(self, **match: Any) -> list[dict[str, Any]]:
        return self.events("pass_end", **match)

    def wait_pass(self, n: int = 1, timeout: float = 60, **match: Any) -> dict[str, Any]:
        """The `n`-th pass_end matching `match` (counting from this controller's start)."""
        wait_for(lambda: len(self.passes(**match)) >= n or self._dead(), timeout=timeout)
        return self.passes(**match)[n - 1]

    def _dead(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the controller exited ({self.proc.returncode}):\n"
                                 + self.log_path.read_text()[-3000:])
        return False

    # ------------------------------------------------------------------ HTTP

    def port(self) -> int:
        def read() -> int | None:
            with contextlib.suppress(OSError, ValueError):
                http = json.loads((self.lab.state / "loop.json").read_text()).get("http")
                if http:
                    return int(http.rsplit(":", 1)[1])
            self._dead()
            return None
        return int(wait_for(read, timeout=30))

    def request(self, path: str, *, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, str]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port()}{path}", data=body, headers=headers or {},
                                     method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def status(self) -> dict[str, Any]:
        code, text = self.request("/status")
        assert code == 200, text
        return dict(json.loads(text))

    # ------------------------------------------------------------------ stop

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._log.close()

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
