"""One reconcile pass (ARCHITECTURE.md "One reconcile pass"), and going back when it fails.

Sits on top of `apply`: resolve which commit to serve (pins, quarantine), load and check its
spec, render, observe, plan, check what would block the plan before touching anything
(foreign containers or listeners on our names and ports, missing images and secrets),
apply, and record. Any failure during apply converges back to the last good commit with
the same machinery (`plan` against what runs now, then `apply`; the containers set aside
by the failed pass come back with a rename and a start) and quarantines the failed commit.

Which failures quarantine a commit: an invalid spec, a missing image, a failed health gate
or a refused create (the commit asks for something this host cannot run). Which do not:
a foreign container or process on a wanted name or port, a secret missing from the
controller's environment, an unreachable engine. Those are the host's to fix, nothing was
stopped, and the next pass simply tries again.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.apply import Applier, ApplyFailed, Done, Emit
from controller.errors import EngineError, Fault, Problem
from controller.observed import Observation
from controller.plan import Plan, SourceChange, conflicts, plan, ports_to_probe, spec_changes
from controller.ports import GatewayConfig, Prober, Runtime, StateStore
from controller.record import Quarantine, Record
from controller.render import Desired, render
from controller.spec.load import Loaded

Load = Callable[[str], Loaded]            # commit -> its spec directory, loaded and checked
Fingerprints = Callable[[set[str]], dict[str, str]]

APPLIED, NOOP, INVALID, FAILED, BLOCKED, SKIPPED = "applied", "no-op", "invalid", "failed", "blocked", "skipped"


@dataclass
class PassResult:
    pass_id: str
    commit: str
    outcome: str
    message: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    done: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    rollback: dict[str, Any] | None = None
    started: str = ""
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome in (APPLIED, NOOP)

    def as_dict(self) -> dict[str, Any]:
        return {"pass": self.pass_id, "commit": self.commit, "outcome": self.outcome, "message": self.message,
                "steps": self.steps, "done": self.done, "faults": [f.as_dict() for f in self.faults],
                "problems": [p.as_dict() for p in self.problems], "rollback": self.rollback,
                "started": self.started, "duration_s": self.duration_s}


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

    # ------------------------------------------------------------------ the pass

    def run(self, head: str, *, retry: bool = False, pin_to: str | None = None) -> PassResult:
        """Serve `head` (the resolved branch head or --rev), unless a pin or the quarantine
        says otherwise. `retry`: forget the quarantine and any pin first. `pin_to`
        (`rollback --to`): serve that commit instead, until the branch head moves past
        `head` or `retry`."""
        return self._run(head, retry=retry, pin_to=pin_to, t0=time.monotonic())

    def _run(self, head: str, *, retry: bool, pin_to: str | None, t0: float) -> PassResult:
        rec = self.store.record()
        pass_id = uuid.uuid4().hex[:12]
        started = _now()
        commit = head
        pin = pin_to is not None
        if retry:
            rec = dataclasses.replace(rec, quarantined={}, pinned=None, pinned_head=None)
            self.store.save(rec)
        if pin_to is not None:
            commit = pin_to
            rec = dataclasses.replace(rec, pinned=pin_to, pinned_head=head,
                                      quarantined={c: q for c, q in rec.quarantined.items() if c != pin_to})
        elif rec.pinned and rec.pinned_head == head:
            commit = rec.pinned
        elif rec.pinned:
            rec = dataclasses.replace(rec, pinned=None, pinned_head=None)  # a newer commit ends the pin
        self.emit("pass_start", commit=commit[:12], pass_id=pass_id)

        def finish(res: PassResult, record: Record) -> PassResult:
            res.started = started
            res.duration_s = round(time.monotonic() - t0, 2)
            self.store.save(record)
            self.store.append_history(res.as_dict())
            self.emit("pass_end", commit=commit[:12], outcome=res.outcome, message=res.message)
            return res

        q = rec.quarantined.get(commit)
        if q is not None:
            serving = f"; serving {rec.last_applied[:12]}" if rec.last_applied else ""
            msg = (f"{commit[:12]} is quarantined since {q.at}: {q.reason}{serving}. "
                   "Commit a fix, or run `llm-gitops retry` to try it again.")
            self.emit("pass_end", commit=commit[:12], outcome=SKIPPED, message=msg)
            return PassResult(pass_id, commit, SKIPPED, msg, started=started)

        if rec.last_attempted != commit:
            rec = dataclasses.replace(rec, last_attempted=commit)
        loaded = self.load(commit)
        if loaded.errors or loaded.spec is None:
            n = len(loaded.errors)
            first = loaded.errors[0].format().splitlines()[0] if loaded.errors else "no spec"
            reason = f"invalid spec ({n} error(s)); first: {first}"
            return finish(PassResult(pass_id, commit, INVALID, f"{commit[:12]}: {reason}. Nothing was changed.",
                                     problems=loaded.problems),
                          self._quarantine(rec, commit, reason))
        desired = self.render_desired(loaded)

        try:
            the_plan, observation = self.plan_live(desired, self.changes_since(rec.last_applied, loaded))
        except EngineError as exc:
            return finish(PassResult(pass_id, commit, FAILED, f"{exc.fault.format()}", faults=[exc.fault]), rec)
        steps = [s.as_dict() for s in the_plan.changes]
        if not the_plan.changes:
            if rec.last_applied == commit and rec.last_good == commit and not pin:
                # the promised no-op: one list call, nothing written
                self.emit("pass_end", commit=commit[:12], outcome=NOOP, message="nothing to do")
                return PassResult(pass_id, commit, NOOP, f"{commit[:12]}: nothing to do; everything runs as specified",
                                  started=started)
            rec = self._applied(rec, commit, desired)
            return finish(PassResult(pass_id, commit, APPLIED, f"{commit[:12]}: applied (no container changed)"), rec)

        blockers = self.blockers(desired, the_plan, observation)
        if blockers:
            host_only = all(not f.subject.startswith("image ") for f in blockers)
            msg = (f"{commit[:12]}: {'blocked' if host_only else 'failed'} before anything was stopped: "
                   + "; ".join(f.message for f in blockers))
            res = PassResult(pass_id, commit, BLOCKED if host_only else FAILED, msg, steps=steps, faults=blockers)
            return finish(res, rec if host_only else self._quarantine(rec, commit, "; ".join(f.message for f in blockers)))

        try:
            done = self.applier.apply(the_plan, desired, revision=commit, pass_id=pass_id,
                                      verify_unchanged=rec.last_applied != commit)
        except ApplyFailed as exc:
            return finish(*self._failed(rec, commit, pass_id, steps, exc))
        rec = self._applied(rec, commit, desired)
        return finish(PassResult(pass_id, commit, APPLIED, f"{commit[:12]}: applied: {_summary(the_plan, done)}",
                                 steps=steps, done=done.actions), rec)

    # ------------------------------------------------------------------ pieces

    def render_desired(self, loaded: Loaded) -> Desired:
        assert loaded.spec is not None
        names: set[str] = set()
        draft = render(loaded.spec, host_name=self.host_name)
        for c in draft.containers:
            names |= set(c.secret_env)
        return render(loaded.spec, secret_fingerprints=self.fingerprints(names), host_name=self.host_name)

    def changes_since(self, applied: str | None, loaded: Loaded) -> list[SourceChange]:
        """The spec keys that differ from the applied commit's: the plan's reasons."""
        if not applied:
            return spec_changes({}, dict(loaded.raw))
        base = self.load(applied)
        return spec_changes(dict(base.raw) if not base.errors else {}, dict(loaded.raw))

    def plan_live(self, desired: Desired, changes: Sequence[SourceChange] = ()) -> tuple[Plan, Observation]:
        observation = self.runtime.observe(desired.stack, [c.name for c in desired.containers])
        the_plan = plan(desired, observation.containers, changes=changes,
                        live_config_digest=self.config.live_digest())
        return the_plan, observation

    def blockers(self, desired: Desired, the_plan: Plan, observation: Observation) -> list[Fault]:
        busy = [port for host, port in ports_to_probe(the_plan, observation.containers)
                if self.prober.port_taken(host, port)]
        out = conflicts(desired, the_plan, observation.foreign, busy)
        starting = [s.desired for s in the_plan.changes if s.desired is not None]
        for image in self.runtime.missing_images({c.image for c in starting}):
            users = ", ".join(sorted(c.name for c in starting if c.image == image))
            out.append(Fault(f"image {image}", f"image {image} (for {users}) is not on this host",
                             "llm-gitops never pulls: build or load it (docker build / docker load), or fix the "
                             "image name; then commit again or run `llm-gitops retry`"))
        for spec in starting:
            missing = [n for n in spec.secret_env if n not in self.environ]
            if missing:
                out.append(Fault(f"container {spec.name}", f"{spec.name} needs {', '.join(missing)}, which the "
                                 "controller's environment does not have",
                                 "export it where llm-gitops runs (the value never leaves the container's env)"))
        return out

    def _failed(self, rec: Record, commit: str, pass_id: str, steps: list[dict[str, Any]],
                exc: ApplyFailed) -> tuple[PassResult, Record]:
        fault = exc.fault
        self.emit("apply_failed", commit=commit[:12], subject=fault.subject, error=fault.message)
        res = PassResult(pass_id, commit, FAILED, f"{commit[:12]}: failed: {fault.subject}: {fault.message}",
                         steps=steps, done=exc.done.actions, faults=[fault])
        if not exc.engine_down and commit != rec.last_good:
            rec = self._quarantine(rec, commit, f"{fault.subject}: {fault.message}")
        good = rec.last_good
        if good is None:
            if exc.container_id:  # do not leave a failed container crash-looping or holding a GPU
                try:
                    self.runtime.stop(exc.container_id)
                except EngineError:
                    pass
            res.message += ". There is no last good commit to go back to: nothing else was stopped."
            return res, rec
        res.rollback = self._rollback(good, pass_id)
        if res.rollback["ok"]:
            res.message += f". Rolled back to {good[:12]}, which serves again."
            rec = dataclasses.replace(rec, last_applied=good)
        else:
            res.message += f". Rolling back to {good[:12]} failed too: {res.rollback['error']}"
        return res, rec

    def _rollback(self, good: str, pass_id: str) -> dict[str, Any]:
        self.emit("rollback_start", to=good[:12])
        loaded = self.load(good)
        if loaded.spec is None or loaded.errors:
            return {"to": good, "ok": False, "error": f"the last good commit {good[:12]} no longer loads"}
        desired = self.render_desired(loaded)
        try:
            the_plan, _ = self.plan_live(desired)
            done: Done = self.applier.apply(the_plan, desired, revision=good, pass_id=pass_id)
        except (ApplyFailed, EngineError) as exc:
            fault = exc.fault
            self.emit("rollback_failed", to=good[:12], error=fault.message)
            return {"to": good, "ok": False, "error": f"{fault.subject}: {fault.message}", "fault": fault.as_dict()}
        self.emit("rollback_end", to=good[:12])
        return {"to": good, "ok": True, "steps": [s.as_dict() for s in the_plan.changes], "done": done.actions}

    def _quarantine(self, rec: Record, commit: str, reason: str) -> Record:
        return dataclasses.replace(rec, quarantined={**rec.quarantined, commit: Quarantine(reason=reason, at=_now())})

    def _applied(self, rec: Record, commit: str, desired: Desired) -> Record:
        rec = rec.with_good(commit)
        return dataclasses.replace(
            rec, last_applied=commit, applied_stack=desired.stack,
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
    return "; ".join(parts) or "nothing to do"


def _names(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
