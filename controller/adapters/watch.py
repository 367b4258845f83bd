"""The threads that tell the loop the branch moved: a ref watcher (watchfiles) for a local
repository, and a poller for any source.

Edge of the loop (`llm-gitops run`). Both only call `Loop.saw_head` / `Loop.source_problem`;
the loop decides what to do. The watcher reacts to git writing a ref (a commit, a reset, a
push into a local bare repo) within a fraction of a second; the poller checks every
`poll_interval_s` anyway (and when poked by the webhook), so a missed file event or a
network filesystem only costs latency.
"""

from __future__ import annotations

import threading
from pathlib import Path

import watchfiles

from controller.errors import ControllerError
from controller.loop import Loop, Source


def _is_ref(git_dir: Path, change: watchfiles.Change, path: str) -> bool:
    rel = Path(path).relative_to(git_dir).as_posix() if path.startswith(str(git_dir)) else path
    return rel == "packed-refs" or rel == "HEAD" or rel.startswith("refs/heads/")


class RefWatcher(threading.Thread):
    def __init__(self, loop: Loop, source: Source, git_dir: Path, stop: threading.Event) -> None:
        super().__init__(name="llm-gitops-watch", daemon=True)
        self.loop, self.source, self.git_dir, self.stop = loop, source, git_dir.resolve(), stop

    def run(self) -> None:
        try:
            for _ in watchfiles.watch(self.git_dir, watch_filter=lambda c, p: _is_ref(self.git_dir, c, p),
                                      debounce=100, step=20, stop_event=self.stop, raise_interrupt=False,
                                      rust_timeout=1000, yield_on_timeout=False):
                try:
                    self.loop.saw_head(self.source.peek(), "watch")
                except ControllerError as exc:
                    self.loop.source_problem(str(exc), "watch")
        except Exception as exc:  # noqa: BLE001 - the poller still runs: say so, do not die silently
            self.loop.emit("watch_stopped", level="warning", error=f"{type(exc).__name__}: {exc}",
                           fallback="polling every poll_interval_s")


class Poller(threading.Thread):
    def __init__(self, loop: Loop, source: Source, interval_s: float, stop: threading.Event) -> None:
        super().__init__(name="llm-gitops-poll", daemon=True)
        self.loop, self.source, self.interval_s, self.stop = loop, source, interval_s, stop
        self._poked = threading.Event()

    def poke(self, why: str = "") -> None:
        self._poked.set()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.loop.saw_head(self.source.peek(), "poll")
            except ControllerError as exc:
                self.loop.source_problem(str(exc), "poll")
            self._poked.wait(self.interval_s)
            self._poked.clear()
