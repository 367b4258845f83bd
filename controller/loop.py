"""The unattended controller (`llm-gitops run`): when to run a pass, and what to do between them.

Acting core, on top of `reconcile` (ARCHITECTURE.md "The loop"). One thread, this one, runs
passes, so passes never overlap (single flight). Adapters in other threads only report:
`saw_head` (the ref watcher and the poller, which a webhook pokes), `stop` (SIGTERM/SIGINT).

A pass runs when:
- the branch head moved (`commit`), at once and whatever the backoff says: a new commit is
  a new intent. A newer head arriving while a pass waits on a health gate cancels that wait
  (`Pacer`, the applier's sleep), and the next pass serves the newest head.
- the drift interval passed (`drift`): what runs is compared with the served commit and put
  back where it differs (a pass on an unchanged commit is one list call when nothing drifted).
- a `retry` or `rollback` request was queued in the state dir by the CLI (`request`).
- after failures, when the backoff delay is over (`backoff`): 5 s, 10 s, 20 s... up to a cap.

Brakes: a container the engine restarted (it crashed) more than `flap_limit` times within
`flap_window_s` is stopped, its restart policy set to "no",
and left alone by every pass until a new commit or `retry`; status and /metrics name it.
`suspend` (a file in the state dir) stops all changes until `resume`, without stopping
the process. `stop` ends the loop at a safe point: the wait in progress is cancelled, no
engine call is cut in half, and the next start converges from what runs.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.errors import Cancelled, ControllerError, FaultError
from controller.reconcile import APPLIED, BLOCKED, FAILED, INTERRUPTED, INVALID, SKIPPED, PassResult, Reconciler

Emit = Callable[..., None]

# what the restarts of a container are read from: name -> (container id, the engine's restart count)
RestartCounts = Callable[[], Mapping[str, tuple[str, int]]]


class Source(Protocol):
    """The branch: `peek` is cheap and thread-safe (ls-remote, rev-parse); `current` makes
    the head readable here (fetches a URL when `fetch`) and returns it. Both raise SourceError."""

    def peek(self) -> str: ...
    def current(self, *, fetch: bool) -> str: ...


class Control(Protocol):
    """The control files of the state dir, written by the CLI while the loop runs."""

    def suspended(self) -> dict[str, Any] | None: ...
    def next_request(self) -> dict[str, Any] | None: ...   # the oldest; removed when answered
    def answer_request(self, request_id: str, answer: Mapping[str, Any]) -> None: ...
    def save_loop_state(self, state: Mapping[str, Any]) -> None: ...
    def loop_state(self) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class LoopSettings:
    drift_interval_s: float = 60.0
    backoff_initial_s: float = 5.0
    backoff_max_s: float = 300.0
    flap_limit: int = 5
    flap_window_s: float = 600.0
    tick_s: float = 1.0   # how often the control files (suspend, requests) are looked at when idle


class Pacer:
    """The sleep of a pass's waits (health gates, the canary). `cancel` makes the current or
    next sleep raise `Cancelled`; `reset` before each pass."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def sleep(self, seconds: float) -> None:
        if self._event.wait(max(seconds, 0.0)):
            raise Cancelled(self.reason)

    def cancel(self, reason: str) -> None:
        self.reason = reason
        self._event.set()

    def reset(self) -> None:
        self._event.clear()
        self.reason = ""

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


def backoff_delay(failures: int, initial: float, cap: float) -> float:
    """initial, 2x, 4x ... capped: the wait after the `failures`-th failure in a row."""
    if failures <= 0:
        return 0.0
    return float(min(cap, initial * 2 ** min(failures - 1, 30)))


@dataclass
class FlapGuard:
    """Restarts per container name within a sliding window."""

    limit: int
    window_s: float
    events: dict[str, deque[float]] = field(default_factory=dict)
    counts: dict[str, tuple[str, int]] = field(default_factory=dict)   # last engine count seen, by name

    def restarted(self, name: str, at: float, times: int = 1) -> None:
        q = self.events.setdefault(name, deque())
        q.extend([at] * max(times, 0))

    def engine_counts(self, seen: Mapping[str, tuple[str, int]], at: float) -> dict[str, int]:
        """Fold in the engine's restart counts; returns the new restarts by name."""
        new: dict[str, int] = {}
        for name, (cid, count) in seen.items():
            before = self.counts.get(name)
            delta = count - before[1] if before and before[0] == cid else count if before else 0
            if delta > 0:
                self.restarted(name, at, delta)
                new[name] = delta
            self.counts[name] = (cid, count)
        return new

    def over(self, at: float) -> dict[str, int]:
        """Names restarted more than `limit` times within the window: name -> restarts."""
        out = {}
        for name, q in self.events.items():
            while q and q[0] < at - self.window_s:
                q.popleft()
            if len(q) > self.limit:
                out[name] = len(q)
        return out

    def forget(self) -> None:
        self.events.clear()


DURATION_BUCKETS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)   # seconds, for /metrics


@dataclass
class Stats:
    """What /metrics exposes; only the loop thread writes it."""

    passes: dict[str, int] = field(default_factory=dict)              # outcome -> count
    duration_buckets: tuple[float, ...] = DURATION_BUCKETS
    duration_counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))  # +Inf last
    duration_sum: float = 0.0
    last_applied_at: float | None = None          # wall clock (seconds since the epoch)
    last_pass_at: float | None = None
    drift_repairs: int = 0                        # containers or config files put back
    restarts: dict[str, int] = field(default_factory=dict)   # container -> restarts seen
    source_errors: int = 0

    def count_pass(self, result: PassResult, at: float) -> None:
        self.passes[result.outcome] = self.passes.get(result.outcome, 0) + 1
        self.duration_counts[bisect.bisect_left(self.duration_buckets, result.duration_s)] += 1
        self.duration_sum += result.duration_s
        self.last_pass_at = at
        if result.outcome == APPLIED or (result.outcome == SKIPPED and result.done):
            self.last_applied_at = at


class Loop:
    def __init__(self, *, reconciler: Reconciler, source: Source, control: Control, settings: LoopSettings,
                 emit: Emit, pacer: Pacer, restart_counts: RestartCounts,
                 halt: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.reconciler, self.source, self.control, self.settings = reconciler, source, control, settings
        self.emit, self.pacer, self.restart_counts, self.halt = emit, pacer, restart_counts, halt
        self.clock, self.wall = clock, wall
        self.stats = Stats()
        self.flaps = FlapGuard(settings.flap_limit, settings.flap_window_s)
        self._cond = threading.Condition()
        self._stopping: str | None = None
        self._seen: str | None = None            # the newest head the watchers reported
        self._handled_seen: str | None = None    # the last reported head a pass was started for
        self._passing: str | None = None         # the head of the pass running now
        self._head: str | None = None            # the head the last pass served
        self._failures = 0
        self._not_before = 0.0
        self._next_drift = 0.0
        self._flapping: dict[str, dict[str, Any]] = {}
        self._suspended: dict[str, Any] | None = None
        self._source_error: str | None = None
        self._source_said: dict[str, str] = {}
        self._state = "starting"
        self._saved: dict[str, Any] | None = None
        self._control_error: str | None = None
        self.started_at = wall()
        self.http: str | None = None             # "127.0.0.1:port", set by the wiring for status

    # ------------------------------------------------------------------ called from other threads

    def saw_head(self, commit: str, via: str) -> None:
        with self._cond:
            if self._source_error is not None:
                self.emit("source_ok", level="info", via=via, head=commit[:12])
                self._source_error = None
                self._source_said.clear()
            if commit == self._seen:
                return
            self._seen = commit
            if self._passing is not None and commit != self._passing:
                self.pacer.cancel(f"a newer commit {commit[:12]} arrived ({via})")
            self._cond.notify_all()

    def source_problem(self, message: str, via: str) -> None:
        """Logged and counted once per distinct problem and reporter (the poller's ls-remote
        and the pass's fetch word the same outage differently), not at every poll."""
        with self._cond:
            if message != self._source_said.get(via):
                self.stats.source_errors += 1
                self.emit("source_error", level="warning", via=via, error=message,
                          serving=(self._head or "")[:12] or None)
            self._source_said[via] = message
            self._source_error = message

    def stop(self, why: str) -> None:
        with self._cond:
            if self._stopping is None:
                self._stopping = why
                self.emit("stopping", reason=why, waiting_for=(self._passing or "")[:12] or None)
            self.pacer.cancel(f"the controller is stopping ({why})")
            self._cond.notify_all()

    def snapshot(self) -> dict[str, Any]:
        """The loop's state for /status, /healthz and `llm-gitops status` (any thread)."""
        with self._cond:
            return {
                "state": self._state, "since": _iso(self.started_at), "http": self.http,
                "serving_head": self._head, "seen_head": self._seen, "passing": self._passing,
                "suspended": self._suspended, "flapping": dict(self._flapping),
                "failures_in_a_row": self._failures,
                "next_try_at": _iso(self.wall() + max(self._not_before - self.clock(), 0.0)) if self._failures else None,
                "source_error": self._source_error, "stopping": self._stopping,
            }

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        self._restore()
        self.emit("controller_start", drift_interval_s=self.settings.drift_interval_s,
                  flap_limit=self.settings.flap_limit, flap_window_s=self.settings.flap_window_s)
        first = True
        while self._stopping is None:
            self._control()
            if self._stopping is not None:
                break
            if self._suspended is not None:
                self._set_state("suspended")
                self._wait(self.settings.tick_s, even_if_new=True)  # a new commit waits for resume
                continue
            trigger = "start" if first else self._due()
            if trigger is None:
                self._set_state("backoff" if self._failures else "idle")
                self._wait(self._until_due())
                continue
            first = False
            self._one(trigger)
        self._set_state("stopped")
        self.emit("controller_stop", reason=self._stopping)

    def _due(self) -> str | None:
        now = self.clock()
        with self._cond:
            if self._seen is not None and self._seen != self._handled_seen:
                return "commit"
        if self._failures and now >= self._not_before:
            return "backoff"
        if not self._failures and now >= self._next_drift:
            return "drift"
        return None

    def _until_due(self) -> float:
        now = self.clock()
        due = self._not_before if self._failures else self._next_drift
        return max(min(due - now, self.settings.tick_s), 0.0)

    def _wait(self, seconds: float, *, even_if_new: bool = False) -> None:
        with self._cond:
            pending = self._seen is not None and self._seen != self._handled_seen
            if self._stopping is None and (even_if_new or not pending):
                self._cond.wait(max(seconds, 0.01))

    def _control(self) -> None:
        """Suspend/resume and the queued requests of the CLI. An unreadable `suspended` file
        counts as suspended: someone meant to hold changes."""
        try:
            suspended = self.control.suspended()
            self._control_error = None
        except ControllerError as exc:
            if str(exc) != self._control_error:
                self.emit("control_unreadable", level="error", error=str(exc), meaning="suspended until it is fixed")
            self._control_error = str(exc)
            suspended = {"at": None, "by": None, "reason": f"unreadable: {exc}"}
        if (suspended is None) != (self._suspended is None):
            self.emit("suspended" if suspended else "resumed", level="warning" if suspended else "info",
                      **({"reason": suspended.get("reason"), "since": suspended.get("at")} if suspended else {}))
            if suspended is None:  # resume: start afresh
                self._failures, self._next_drift = 0, 0.0
        with self._cond:
            self._suspended = suspended
        self._save()
        while suspended is None and self._stopping is None:
            try:
                req = self.control.next_request()
            except ControllerError as exc:
                self.emit("control_unreadable", level="warning", error=str(exc))
                return
            if req is None:
                return
            self._request(req)   # answered, then removed: a stop in between leaves it queued

    def _request(self, req: dict[str, Any]) -> None:
        rid, action, to = str(req.get("id") or "?"), req.get("action"), req.get("to")
        bad = (None if action == "retry" and to is None or action == "rollback" and isinstance(to, str) and to
               else f"not a request llm-gitops makes ({json_repr(req)}); use `llm-gitops retry` or `rollback`")
        self.emit("request", id=rid, action=str(action), to=str(to)[:12] if to else None, error=bad)
        if bad is not None:
            self.control.answer_request(rid, {"ok": False, "message": bad})
            return
        head = self._resolve(fetch=True)
        if head is None:
            self.control.answer_request(rid, {"ok": False, "message": "the branch head cannot be read: "
                                              f"{self._source_error}"})
            return
        if action == "retry":
            self._forget_flaps("retry")
            result, error = self._pass(head, "retry", retry=True, request=rid)
        else:
            result, error = self._pass(head, "rollback", pin_to=str(to), request=rid)
        if result is None:
            self.control.answer_request(rid, {"ok": False, "message": f"the pass could not run: {error}"})
        elif result.outcome == INTERRUPTED:
            self.control.answer_request(rid, {"ok": False, **result.as_dict()})
        else:
            self.control.answer_request(rid, {"ok": result.ok, **result.as_dict()})

    def _resolve(self, *, fetch: bool) -> str | None:
        try:
            head = self.source.current(fetch=fetch)
        except ControllerError as exc:
            self.source_problem(str(exc), "fetch")
            return self._head or self.reconciler.store.record().last_applied
        with self._cond:
            if self._source_error is not None and fetch:
                self.emit("source_ok", via="fetch", head=head[:12])
                self._source_error = None
                self._source_said.clear()
        return head

    def _one(self, trigger: str) -> None:
        with self._cond:
            seen = self._seen
        fetch = trigger in ("start", "commit", "backoff")
        head = self._resolve(fetch=fetch)
        with self._cond:
            # a head the watchers report later that equals this one needs no second pass
            self._handled_seen = seen if seen is not None else head
            if self._seen is None:
                self._seen = head
        if head is None:
            self._failed_pass("no commit to serve yet: " + (self._source_error or "the branch has no head"))
            return
        if self._head is not None and head != self._head:
            self._forget_flaps(f"new commit {head[:12]}")
        self._pass(head, trigger)

    def _pass(self, head: str, trigger: str, *, retry: bool = False, pin_to: str | None = None,
              request: str | None = None) -> tuple[PassResult | None, str | None]:
        """(the result, or None and why the pass could not run)."""
        self.pacer.reset()
        with self._cond:
            self._passing = head
            seen_at_start = self._seen
            if self._stopping is not None:
                self.pacer.cancel(f"the controller is stopping ({self._stopping})")
        try:
            before = self.reconciler.store.record().last_applied
        except ControllerError as exc:
            with self._cond:
                self._passing = None
            self._failed_pass(str(exc), commit=head)
            return None, str(exc)
        with self._cond:
            # a head reported after it was resolved, before the pass was marked as running
            if self._seen != seen_at_start and self._seen not in (None, head):
                self.pacer.cancel(f"a newer commit {str(self._seen)[:12]} arrived")
        self._set_state("applying")
        try:
            result = self.reconciler.run(head, retry=retry, pin_to=pin_to, trigger=trigger,
                                         leave_alone=frozenset(self._flapping), request=request)
        except Cancelled as exc:  # reconcile answers a cancelled wait itself; this is a safety net
            self.emit("pass_end", level="warning", commit=head[:12], outcome=INTERRUPTED, message=exc.reason,
                      trigger=trigger)
            return None, exc.reason
        except ControllerError as exc:
            # e.g. the commit cannot be read: the log context of the pass ends here too
            self.emit("pass_end", level="error", commit=head[:12], outcome="error", message=str(exc), trigger=trigger)
            if request is None:
                self._failed_pass(str(exc), commit=head)
            return None, str(exc)
        finally:
            with self._cond:
                self._passing = None
        self._head = head
        now = self.wall()
        self.stats.count_pass(result, now)
        self._count_repairs(result, before)
        if result.outcome in (FAILED, BLOCKED) or (result.outcome == SKIPPED and "failed too" in result.message):
            self._failed_pass(result.message, commit=head, counted=True)
        elif result.outcome != INTERRUPTED:
            self._failures = 0
        self._next_drift = self.clock() + self.settings.drift_interval_s
        if result.outcome == INVALID:
            # An invalid head cannot go on from what an interrupted pass (this run's, or one cut
            # by a SIGTERM before a restart) left running: serve the last good commit now (a
            # drift check on a quarantined head does; a no-op when nothing was left), not a
            # drift interval later.
            self._next_drift = self.clock()
        self._check_flaps()
        self._save()
        return result, None

    def _failed_pass(self, message: str, *, commit: str | None = None, counted: bool = False) -> None:
        self._failures += 1
        delay = backoff_delay(self._failures, self.settings.backoff_initial_s, self.settings.backoff_max_s)
        self._not_before = self.clock() + delay
        self._next_drift = self.clock() + self.settings.drift_interval_s
        self.emit("backoff", level="warning", commit=(commit or "")[:12] or None, failures=self._failures,
                  next_try_in_s=round(delay, 1), **({} if counted else {"error": message}))
        self._save()

    def _count_repairs(self, result: PassResult, before: str | None) -> None:
        """A pass that changed containers of the commit already applied repaired drift."""
        served = result.served or result.commit
        if before is None or served != before or result.outcome not in (APPLIED, SKIPPED) or not result.done:
            return
        changed = [a for a in result.done if a.get("action") in ("created", "started", "restarted", "restored")]
        swapped = any(s.get("action") == "restart" for s in result.steps)
        if changed or swapped:
            # A repair of a hand change (`docker stop`, an edited config) is not a crash: it is
            # counted here, not by the flap guard, which counts the engine's own restarts.
            self.stats.drift_repairs += len(changed) or 1
            self.emit("drift_repaired", commit=served[:12], containers=[a["container"] for a in changed])

    def _check_flaps(self) -> None:
        try:
            counts = self.restart_counts()
        except ControllerError as exc:
            self.emit("restart_counts_unreadable", level="warning", error=str(exc))
            return
        at = self.clock()
        for name, n in self.flaps.engine_counts(counts, at).items():
            self.stats.restarts[name] = self.stats.restarts.get(name, 0) + n
        for name, n in self.flaps.over(at).items():
            if name in self._flapping:
                continue
            cid = counts.get(name, ("", 0))[0]
            self.emit("flapping", level="error", container=name, restarts=n, window_s=self.settings.flap_window_s,
                      action="stopped and left alone until a new commit or `llm-gitops retry`")
            if cid:
                try:
                    self.halt(cid)
                except FaultError as exc:  # not left alone then: the next check tries again
                    self.emit("halt_failed", level="error", container=name, error=exc.fault.message)
                    continue
            self._flapping[name] = {"restarts": n, "window_s": self.settings.flap_window_s, "since": _iso(self.wall())}

    def _forget_flaps(self, why: str) -> None:
        if self._flapping:
            self.emit("flapping_cleared", containers=sorted(self._flapping), why=why)
        self._flapping.clear()
        self.flaps.forget()

    # ------------------------------------------------------------------ state for status

    def _set_state(self, state: str) -> None:
        if state != self._state:
            with self._cond:
                self._state = state
            self._save()

    def _save(self) -> None:
        """loop.json, when what it says changed (not every tick: no idle disk writes)."""
        snap = self.snapshot()
        if snap == self._saved:
            return
        try:
            self.control.save_loop_state({**snap, "updated": _iso(self.wall())})
            self._saved = snap
        except ControllerError as exc:
            self.emit("state_unwritable", level="warning", error=str(exc))

    def _restore(self) -> None:
        """Flapping containers stay left alone across a restart of the controller."""
        try:
            old = self.control.loop_state() or {}
        except ControllerError:
            old = {}
        flapping = old.get("flapping")
        if isinstance(flapping, dict):
            self._flapping = {str(k): v for k, v in flapping.items() if isinstance(v, dict)}
        head = old.get("serving_head")
        self._head = head if isinstance(head, str) else None


def json_repr(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
