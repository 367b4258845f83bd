"""One reconcile pass (ARCHITECTURE.md "One reconcile pass"), and going back when it fails.

Sits on top of `apply`: resolve which commit to serve (pins, quarantine), load and check its
spec, render, observe, plan, check what would block the plan before touching anything
(foreign containers or listeners on our names and ports, missing images and secrets),
apply, and record. Any failure during apply converges back to the last good commit with
the same machinery (`plan` against what runs now, then `apply`; the containers set aside
by the failed pass come back with a rename and a start) and quarantines the failed commit.

Which failures quarantine a commit: an invalid spec, a missing image, a failed health gate
or a refused create (the commit asks for something this host cannot run), and a commit
whose passes were interrupted (killed, timed out) `MAX_UNFINISHED` times. Which do not:
a foreign container or process on a wanted name or port, a secret missing from the
controller's environment, an unreachable engine. Those are the host's to fix, nothing was
stopped, and the next pass simply tries again. The last good commit is never quarantined.
A quarantined head is not tried again; the pass converges to the last good commit instead
(usually a no-op), so drift is still repaired.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.apply import FAILED_STOP_S, Applier, ApplyFailed, Done, Emit, aside_name
from controller.errors import (Cancelled, ControllerError, EngineError, Fault, FaultError, Problem,
                               RevisionNotFound)
from controller.observed import PASS, Observation
from controller.plan import Plan, SourceChange, conflicts, plan, ports_to_probe, spec_changes
from controller.ports import GatewayConfig, Prober, Runtime, StateStore
from controller.record import Quarantine, Record
from controller.render import Desired, render, with_fingerprints
from controller.spec.load import Loaded

Load = Callable[[str], Loaded]            # commit -> its spec directory, loaded and checked
Fingerprints = Callable[[set[str]], dict[str, str]]

APPLIED, NOOP, INVALID, FAILED, BLOCKED, SKIPPED = "applied", "no-op", "invalid", "failed", "blocked", "skipped"
INTERRUPTED = "interrupted"   # a wait was cancelled (newer commit, SIGTERM); the next pass goes on from there
MAX_UNFINISHED = 3
# How long a pass that lost the engine (a daemon restart) waits for it, asking once a second,
# before going back: going back at once would fail too, and leave a provider the pass had
# replaced down until the next pass.
ENGINE_WAIT_S = 60.0


@dataclass
class PassResult:
    pass_id: str
    commit: str
    outcome: str
    message: str                       # what happened, without the commit (printed beside it)
    trigger: str = "apply"             # apply | retry | rollback
    steps: list[dict[str, Any]] = field(default_factory=list)
    done: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    rollback: dict[str, Any] | None = None
    served: str | None = None          # when the head was skipped: the commit served instead
    request: str | None = None         # the id of the `retry`/`rollback` request that asked for it
    left_alone: list[str] = field(default_factory=list)   # containers the flap limit kept out of it
    started: str = ""
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome in (APPLIED, NOOP)

    @property
    def line(self) -> str:
        return f"{self.commit[:12]}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"pass": self.pass_id, "commit": self.commit, "outcome": self.outcome, "message": self.message,
                "trigger": self.trigger, "steps": self.steps, "done": self.done,
                "faults": [f.as_dict() for f in self.faults], "problems": [p.as_dict() for p in self.problems],
                "rollback": self.rollback, "served": self.served, "started": self.started,
                "duration_s": self.duration_s, "request": self.request, "left_alone": self.left_alone}


@dataclass
class Reconciler:
    runtime: Runtime
    prober: Prober
    store: StateStore
    config: GatewayConfig
    load: Load
    fingerprints: Fingerprints
    environ: Mapping[str, str]
    emit: Emit
    applier: Applier
    host_name: str | None = None
    # whether commit a is an ancestor of commit b (git): a quarantined commit that the applied
    # one descends from is superseded, and forgotten
    is_ancestor: Callable[[str, str], bool] = lambda a, b: False
    # signed-commit mode: why a commit's signature is not accepted, or None when it is. A
    # refused commit is quarantined like an invalid one (status says why; `retry` checks again).
    verify: Callable[[str], str | None] | None = None
    # how to wait between asking a lost engine again: the wiring gives the applier's sleep,
    # which the loop can cancel (newer commit, SIGTERM); and the clock that bounds the wait
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _leave_alone: frozenset[str] = field(default=frozenset(), init=False, repr=False)

    # ------------------------------------------------------------------ the pass

    def run(self, head: str, *, retry: bool = False, pin_to: str | None = None, trigger: str | None = None,
            leave_alone: frozenset[str] = frozenset(), request: str | None = None) -> PassResult:
        """Serve `head` (the resolved branch head or --rev), unless a pin or the quarantine
        says otherwise. `retry`: forget the quarantine and any pin first. `pin_to`
        (`rollback --to`): serve that commit instead, until the branch head moves past
        `head` or `retry`; if it fails, the pin is not kept. `leave_alone`: container names
        the pass must not touch (the loop's flap limit). `trigger`, `request`: why it runs,
        for the history (the loop says `commit`, `drift`, `webhook`...)."""
        t0, started = time.monotonic(), _now()
        trigger = trigger or ("retry" if retry else "rollback" if pin_to else "apply")
        self._leave_alone = leave_alone
        result, record = self._run(head, retry=retry, pin_to=pin_to, trigger=trigger)
        result.started, result.duration_s, result.trigger = started, round(time.monotonic() - t0, 2), trigger
        result.request = request
        if record is not None:
            self.store.save(record)
            self.store.append_history(result.as_dict())
        # quiet: nothing was done and nothing was written (a drift check on an unchanged stack)
        self.emit("pass_end", level="info" if result.ok else "warning", commit=result.commit[:12],
                  outcome=result.outcome, message=result.message, trigger=trigger, duration_s=result.duration_s,
                  **({"quiet": True} if record is None and not result.done else {}))
        return result

    def _run(self, head: str, *, retry: bool, pin_to: str | None,
             trigger: str) -> tuple[PassResult, Record | None]:
        """(result, the record to save, or None to write nothing)."""
        rec = self.store.record()
        pass_id = uuid.uuid4().hex[:12]
        before = rec
        if retry:
            rec = dataclasses.replace(rec, quarantined={}, pinned=None, pinned_head=None, inflight=None,
                                      inflight_attempts=0)
        commit = head
        if pin_to is not None:  # the CLI let it through: a known good commit, or --force
            commit = pin_to
            rec = dataclasses.replace(rec, pinned=pin_to, pinned_head=head,
                                      quarantined={c: q for c, q in rec.quarantined.items() if c != pin_to})
        elif rec.pinned and rec.pinned_head == head:
            commit = rec.pinned
        elif rec.pinned:
            rec = dataclasses.replace(rec, pinned=None, pinned_head=None)  # a newer commit ends the pin
        self.emit("pass_start", commit=commit[:12], pass_id=pass_id, trigger=trigger)

        if rec.inflight == commit and rec.inflight_attempts >= MAX_UNFINISHED and commit != rec.last_good:
            rec = self._quarantine(rec, commit, f"{rec.inflight_attempts} passes on it were interrupted (killed or "
                                                "timed out) before they finished")
        q = rec.quarantined.get(commit)
        if q is None and self.verify is not None and not self._proven(rec, commit):
            refused = self.verify(commit)
            if refused is not None:
                rec = self._quarantine(rec, commit, f"signature not accepted: {refused}")
                q = rec.quarantined[commit]
        if q is not None:
            return self._skip(commit, q, rec, rec != before)

        result, rec = self._pass(commit, pass_id, rec)
        if not result.ok and pin_to is not None:  # a failed rollback --to keeps no pin
            rec = dataclasses.replace(rec, pinned=before.pinned, pinned_head=before.pinned_head)
        if result.ok and result.outcome == APPLIED:  # quarantined ancestors are superseded
            rec = dataclasses.replace(rec, quarantined={c: q for c, q in rec.quarantined.items()
                                                        if c != commit and not self._ancestor(c, commit)})
        if result.outcome == NOOP and rec == before:
            return result, None  # the promised no-op: one list call, nothing written
        return result, rec

    @staticmethod
    def _proven(rec: Record, commit: str) -> bool:
        """Applied and good before (signed mode was off, or it was verified then)."""
        return commit == rec.last_good or commit in rec.good_trail

    def _ancestor(self, a: str, b: str) -> bool:
        try:
            return self.is_ancestor(a, b)
        except ControllerError:
            return False

    def _skip(self, head: str, q: Quarantine, rec: Record, changed: bool) -> tuple[PassResult, Record | None]:
        """The head is quarantined: converge to the last good commit instead (drift is still
        repaired), and say why the head is not served."""
        why = (f"quarantined since {q.at}: {q.reason}. Commit a fix, or run `llm-gitops retry` to try it again")
        good = rec.last_good
        if good is None or good == head:
            return PassResult(uuid.uuid4().hex[:12], head, SKIPPED, why + "."), rec if changed else None
        result, new_rec = self._pass(good, uuid.uuid4().hex[:12], rec)
        serving = (f"serving the last good commit {good[:12]}" if result.ok
                   else f"and the last good commit {good[:12]} failed too: {result.message}")
        skipped = dataclasses.replace(result, commit=head, outcome=SKIPPED, served=good,
                                      message=f"{why}; {serving}" + (f" ({result.message})" if result.outcome
                                                                      == APPLIED else ""))
        if result.outcome == NOOP and not changed:
            return skipped, None
        return skipped, new_rec

    def _pass(self, commit: str, pass_id: str, rec: Record) -> tuple[PassResult, Record]:
        if rec.last_attempted != commit:
            rec = dataclasses.replace(rec, last_attempted=commit)
        try:
            loaded = self.load(commit)
        except RevisionNotFound:
            kept = self.store.snapshot(commit)
            if kept is None:
                raise
            # the commit is gone from git (a force-push), but the state dir kept what it runs
            return self._pass_desired(commit, pass_id, rec, kept, changes=[])
        if loaded.errors or loaded.spec is None:
            n = len(loaded.errors)
            reason = f"invalid spec: {n} error(s), listed below; nothing was changed"
            first = loaded.errors[0].format().splitlines()[0] if loaded.errors else "no spec"
            return (PassResult(pass_id, commit, INVALID, reason, problems=loaded.problems),
                    self._quarantine(rec, commit, f"invalid spec ({n} error(s)); first: {first}"))
        return self._pass_desired(commit, pass_id, rec, self.render_desired(loaded),
                                  changes=self.changes_since(rec.last_applied, loaded, commit), loaded=loaded)

    def _pass_desired(self, commit: str, pass_id: str, rec: Record, desired: Desired, *,
                      changes: list[SourceChange], loaded: Loaded | None = None) -> tuple[PassResult, Record]:
        """Plan, check, apply and record `desired` for `commit`. `loaded`: its spec when git
        still has it (for the reasons of a rollback's steps)."""
        try:
            the_plan, observation = self.plan_live(desired, changes)
        except EngineError as exc:
            return PassResult(pass_id, commit, FAILED, exc.fault.message, faults=[exc.fault]), rec
        left_alone = sorted(n for n in self._leave_alone if any(s.name == n for s in the_plan.changes))
        the_plan = the_plan.leaving_alone(self._leave_alone)
        steps = [s.as_dict() for s in the_plan.changes]
        # A pass that started applying and never finished (killed, crashed) may have left a
        # container it started unproven (not gated, restart policy still "no"), even on the
        # applied commit (a drift repair): the pass after it verifies everything it keeps.
        interrupted = rec.inflight
        unproven = rec.last_applied != commit or interrupted is not None
        if not the_plan.changes and not unproven:
            said = (f"nothing to do, leaving {', '.join(left_alone)} alone (restarted too often; a new commit or "
                    "`llm-gitops retry` tries it again)" if left_alone else "nothing to do; everything runs as specified")
            return PassResult(pass_id, commit, NOOP, said, left_alone=left_alone), rec

        blockers = self.blockers(desired, the_plan, observation)
        if blockers:
            host_only = all(not f.subject.startswith("image ") for f in blockers)
            msg = (f"{'blocked' if host_only else 'failed'} before anything was stopped: "
                   + "; ".join(f"{f.subject}: {f.message}" for f in blockers))
            res = PassResult(pass_id, commit, BLOCKED if host_only else FAILED, msg, steps=steps, faults=blockers)
            return res, rec if host_only else self._quarantine(rec, commit, msg)

        attempts = rec.inflight_attempts + 1 if rec.inflight == commit else 1
        self.store.save(dataclasses.replace(rec, inflight=commit, inflight_attempts=attempts))
        try:
            # a config already proven (the applied one, put back after a hand edit) needs no canary
            done = self.applier.apply(the_plan, desired, revision=commit, pass_id=pass_id, verify_unchanged=unproven,
                                      canary=desired.config_digest != rec.applied_config_digest)
        except ApplyFailed as exc:
            return self._failed(rec, commit, pass_id, steps, exc, loaded)
        except Cancelled as exc:
            # An orderly stop, not a crash: it does not count toward MAX_UNFINISHED. What it
            # started stays as it is; the next pass plans from there (and gates it again).
            self.emit("pass_interrupted", level="warning", commit=commit[:12], reason=exc.reason)
            return PassResult(pass_id, commit, INTERRUPTED, f"interrupted while waiting: {exc.reason}; the next "
                              "pass goes on from what runs now", steps=steps), rec
        rec = self._applied(rec, commit, desired)
        said = f"applied: {_summary(the_plan, done)}"
        if interrupted is not None:
            said += (f"; a pass on {interrupted[:12]} had been interrupted before it finished (killed or crashed?), "
                     "and this one finished from what it left")
        return PassResult(pass_id, commit, APPLIED, said, steps=steps, done=done.actions, left_alone=left_alone), rec

    # ------------------------------------------------------------------ pieces

    def render_desired(self, loaded: Loaded) -> Desired:
        """Render once; the secrets the containers receive are known only then, so their
        fingerprints are folded into the spec hashes afterwards."""
        assert loaded.spec is not None
        draft = render(loaded.spec, host_name=self.host_name)
        return with_fingerprints(draft, self.fingerprints({n for c in draft.containers for n in c.secret_env}))

    def changes_since(self, applied: str | None, loaded: Loaded, commit: str | None = None) -> list[SourceChange]:
        """The spec keys that differ from the applied commit's: the plan's reasons. (None when
        `commit` is the applied one: no second read of git on a no-op pass.)"""
        if applied is not None and applied == commit:
            return []
        base: Mapping[str, Any] = {}
        if applied:
            try:
                old = self.load(applied)
                base = old.raw if not old.errors else {}
            except ControllerError:
                base = {}  # e.g. the commit is gone after a force-push: reasons fall back to fields
        return spec_changes(dict(base), dict(loaded.raw))

    def plan_live(self, desired: Desired, changes: Sequence[SourceChange] = ()) -> tuple[Plan, Observation]:
        """Observe and plan. The runtime returns every container this state dir made, in any
        stack, so a renamed stack's old containers (or a failed rename's new ones) are
        planned for removal rather than left running on the ports."""
        observation = self.runtime.observe(desired.stack, [c.name for c in desired.containers])
        the_plan = plan(desired, observation.containers, changes=changes,
                        live_config_digest=self.config.live_digest())
        return the_plan, observation

    def blockers(self, desired: Desired, the_plan: Plan, observation: Observation) -> list[Fault]:
        busy = [port for host, port in ports_to_probe(the_plan, observation.containers)
                if self.prober.port_taken(host, port)]
        out = conflicts(desired, the_plan, observation.foreign, busy, observation.foreign_ports)
        starting = [s.desired for s in the_plan.changes if s.desired is not None]
        for image in self.runtime.missing_images({c.image for c in starting}):
            users = ", ".join(sorted(c.name for c in starting if c.image == image))
            out.append(Fault(f"image {image}", f"not on this host (wanted by {users})",
                             "llm-gitops never pulls: build or load it (docker build / docker load), or fix the "
                             "image name; then commit again or run `llm-gitops retry`"))
        for spec in starting:
            missing = [n for n in spec.secret_env if not self.environ.get(n)]  # empty is as good as unset
            if missing:
                out.append(Fault(f"container {spec.name}", f"needs {', '.join(missing)}, which the "
                                 "controller's environment does not have (or has empty)",
                                 "export it where llm-gitops runs (the value never leaves the container's env)"))
        return out

    def _failed(self, rec: Record, commit: str, pass_id: str, steps: list[dict[str, Any]],
                exc: ApplyFailed, loaded: Loaded | None) -> tuple[PassResult, Record]:
        fault = exc.fault
        self.emit("apply_failed", level="error", commit=commit[:12], subject=fault.subject, error=fault.message)
        res = PassResult(pass_id, commit, FAILED, f"failed: {fault.subject}: {fault.message}",
                         steps=steps, done=exc.done.actions, faults=[fault])
        rec = dataclasses.replace(rec, inflight=None, inflight_attempts=0)
        if not exc.host_fault and commit != rec.last_good:
            rec = self._quarantine(rec, commit, f"{fault.subject}: {fault.message}")
        # the last good commit; or, if the record was lost, the one whose state the state dir kept
        good = rec.last_good or self.store.snapshot_of()[0]
        if good is None:
            if exc.container_id:  # do not leave a failed container crash-looping or holding a GPU
                try:
                    self.runtime.stop(exc.container_id, timeout_s=FAILED_STOP_S)
                except FaultError:
                    pass
            restored = self._restore_set_aside(exc.done.set_aside, pass_id)
            res.message += (". There is no last good commit to go back to: nothing else was stopped"
                            + (f"; brought back what this pass had stopped ({', '.join(restored)})" if restored else ""))
            return res, rec
        # A lost engine (a daemon restart): going back at once fails too and leaves what the
        # pass replaced down until the next pass, so wait for it (bounded) and go back then.
        # A dying daemon may still answer on a kept connection, so a failed go-back that lost
        # the engine waits and tries again, within the same bound.
        until = self.clock() + ENGINE_WAIT_S
        if fault.engine_lost:
            self.emit("engine_wait", level="warning", up_to_s=ENGINE_WAIT_S)
        stopped = self._await_engine(until) if fault.engine_lost else None
        while stopped is None:
            res.rollback, good_desired = self._rollback(good, pass_id, loaded)
            lost = Fault(**res.rollback["fault"]).engine_lost if "fault" in res.rollback else False
            if good_desired is not None or not lost or self.clock() >= until:
                break
            stopped = self._await_engine(until)
        if stopped is not None:  # a newer commit, or SIGTERM: that pass, or the next start, goes on
            res.rollback, good_desired = {"to": good, "ok": False, "error": f"interrupted: {stopped}"}, None
        touched = exc.done.set_aside or exc.done.config_swapped or any(
            a["action"] in ("created", "started", "restarted", "restored", "stopped") for a in exc.done.actions)
        if good_desired is not None and not touched and not res.rollback.get("steps"):
            res.message += f". Nothing had been changed: {good[:12]} keeps serving"
            rec = self._applied(rec, good, good_desired)
        elif good_desired is not None:
            res.message += f". Rolled back to {good[:12]}, which serves again"
            rec = self._applied(rec, good, good_desired)
        else:
            res.message += f". Rolling back to {good[:12]} failed too: {res.rollback['error']}"
        return res, rec

    def _await_engine(self, until: float) -> str | None:
        """Ask the engine once a second until it answers or `until` (the clock's) passes.
        Returns why the wait was cancelled (a newer commit, stopping), or None."""
        while self.clock() < until:
            try:
                self.sleep(1.0)
            except Cancelled as exc:
                return exc.reason
            try:
                self.runtime.observe("")  # bounded by the docker client's own timeout
            except FaultError:
                continue
            self.emit("engine_back")
            break
        return None

    def _restore_set_aside(self, ids: Sequence[str], pass_id: str) -> list[str]:
        """Without a commit to go back to: rename back and start what this pass set aside,
        where its name is free (best effort, not gated; the next pass plans from there)."""
        if not ids:
            return []
        restored = []
        try:
            seen = {c.id: c for c in self.runtime.observe("").containers}
        except FaultError:
            return []
        by_name = {c.name: c for c in seen.values()}
        for cid in ids:
            c = seen.get(cid)
            if c is None or not c.original_name:
                continue
            holder = by_name.get(c.original_name)
            try:
                if holder is not None:
                    if holder.labels.get(PASS) != pass_id:
                        continue  # not ours to move: leave it
                    # the failed container this pass made in its place: stopped, and set aside
                    self.runtime.stop(holder.id, timeout_s=FAILED_STOP_S)
                    self.runtime.rename(holder.id, aside_name(holder))
                self.runtime.rename(cid, c.original_name)
                self.runtime.start(cid)
                restored.append(c.original_name)
            except FaultError:
                continue
        return restored

    def _rollback(self, good: str, pass_id: str, failed: Loaded | None) -> tuple[dict[str, Any], Desired | None]:
        self.emit("rollback_start", level="warning", to=good[:12])
        try:
            # what the good commit ran, as the state dir kept it: no git needed (the commit may
            # be gone after a force-push), and exactly the hashes of the containers set aside
            desired = self.store.snapshot(good)
            changes: list[SourceChange] = []
            try:
                loaded = self.load(good)
                if loaded.spec is not None and not loaded.errors:
                    desired = desired or self.render_desired(loaded)
                    if failed is not None:  # reasons read as going back
                        changes = spec_changes(dict(failed.raw), dict(loaded.raw))
            except ControllerError:
                pass
            if desired is None:
                return {"to": good, "ok": False, "error": f"the last good commit {good[:12]} can no longer be read "
                        "and the state dir keeps no copy of what it ran"}, None
            the_plan, _ = self.plan_live(desired, changes)
            done: Done = self.applier.apply(the_plan, desired, revision=good, pass_id=pass_id, canary=False)
        except (ApplyFailed, FaultError) as exc:
            fault = exc.fault
            self.emit("rollback_failed", level="error", to=good[:12], error=fault.message)
            return {"to": good, "ok": False, "error": f"{fault.subject}: {fault.message}", "fault": fault.as_dict()}, None
        except ControllerError as exc:
            self.emit("rollback_failed", level="error", to=good[:12], error=str(exc))
            return {"to": good, "ok": False, "error": str(exc)}, None
        except Cancelled as exc:  # stopping, or a newer commit: that pass plans from what runs now
            self.emit("rollback_interrupted", level="warning", to=good[:12], reason=exc.reason)
            return {"to": good, "ok": False, "error": f"interrupted: {exc.reason}"}, None
        self.emit("rollback_end", to=good[:12])
        return {"to": good, "ok": True, "steps": [s.as_dict() for s in the_plan.changes], "done": done.actions}, desired

    def _quarantine(self, rec: Record, commit: str, reason: str) -> Record:
        return dataclasses.replace(rec, quarantined={**rec.quarantined, commit: Quarantine(reason=reason, at=_now())},
                                   inflight=None, inflight_attempts=0)

    def _applied(self, rec: Record, commit: str, desired: Desired) -> Record:
        try:
            self.store.save_snapshot(commit, desired)
        except FaultError as exc:  # only going back without git needs it: say so, go on
            self.emit("snapshot_failed", level="warning", error=exc.fault.message)
        rec = rec.with_good(commit)
        return dataclasses.replace(
            rec, last_applied=commit, applied_stack=desired.stack, inflight=None, inflight_attempts=0,
            applied_hashes={c.name: c.spec_hash for c in desired.containers},
            applied_config_digest=desired.config_digest)


PAST = {"create": "created", "recreate": "recreated", "start": "started", "restart": "restarted", "remove": "removed"}


def _summary(the_plan: Plan, done: Done) -> str:
    """`created demo-cache, demo-gateway; recreated demo-vllm; config swapped`."""
    by_action: dict[str, list[str]] = {}
    for step in the_plan.changes:
        by_action.setdefault(PAST[step.action.value], []).append(step.name)
    parts = [f"{verb} {_names(names)}" for verb, names in by_action.items()]
    if done.config_swapped:
        parts.append("config swapped")
    return "; ".join(parts) or "no container changed"


def _names(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
