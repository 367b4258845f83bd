"""Plan -> the engine: stage and swap the gateway config, stop, create, start, health-gate.

The acting half of a pass (ARCHITECTURE.md step 5-7), written against `controller.ports`
only. Order: stage and check the config first (nothing is touched if that fails); stop
every container whose GPU or port another one needs (`Step.stops_first`); then the steps
in plan order (cache, providers, gateway, orphans), swapping the config just before the
gateway; each started container must pass its health gate before the next step. Replaced
and removed containers are stopped and renamed aside, not removed, until the whole plan
has succeeded: going back (`reconcile`) is then a rename and a start.

A staged config that changes is first proven on a canary (ARCHITECTURE.md step 5): the
gateway image booted on the staged file on a free port of 127.0.0.1, gated like the gateway,
then asked for /v1/models, which must list exactly the commit's public names. Only then is
anything stopped. After the swap, the restarted gateway must list the same names (step 7).

Raises `ApplyFailed` with the fault and what was done; it never undoes anything itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controller.errors import (ControllerError, EngineError, EngineNotFound, Fault, FaultError, GatewayMismatch,
                               HealthError, StateError)
from controller.observed import ASIDE, PASS, ObservedContainer
from controller.plan import Action, Plan, Step
from controller.ports import GatewayConfig, Prober, Runtime
from controller.render import ContainerSpec, Desired
from controller.render.containers import CANARY_HOST, Health, base_url, canary_container
from controller.render.litellm import master_key_env, public_names

FAILED_STOP_S = 2   # stop timeout for a container that failed in the pass that goes back
MODELS_RETRY_S = 10.0   # how long a gateway that passed its health gate may take to list its models
Emit = Callable[..., None]   # emit(event, level="info", **fields): the caller's structured log


@dataclass(frozen=True)
class Gate:
    """A started container is healthy after `samples` good probes in a row, `interval_s`
    apart; it fails at once when it exits, and at its `startup_timeout_s` otherwise."""

    samples: int = 3
    interval_s: float = 0.5
    progress_every_s: float = 5.0


@dataclass
class Done:
    """What an apply did, in order, for the history and for going back."""

    actions: list[dict[str, Any]] = field(default_factory=list)
    set_aside: list[str] = field(default_factory=list)   # ids renamed aside this pass
    removed: list[str] = field(default_factory=list)
    config_swapped: bool = False

    def add(self, action: str, name: str, cid: str, **extra: Any) -> None:
        self.actions.append({"action": action, "container": name, "id": cid[:12], **extra})


class ApplyFailed(ControllerError):
    """`host_fault`: the host failed, not the commit (the engine stopped answering, the
    state dir could not be written, a container was removed by hand mid-pass): the pass
    goes back, but the commit is not quarantined."""

    def __init__(self, fault: Fault, done: Done, *, container_id: str | None = None,
                 host_fault: bool = False) -> None:
        self.fault, self.done, self.container_id, self.host_fault = fault, done, container_id, host_fault
        super().__init__(fault.format())


class Interfered(FaultError):
    """A container the pass was waiting on disappeared: someone removed it by hand."""


def aside_name(c: ObservedContainer) -> str:
    return f"{c.name}{ASIDE}{c.id[:12]}"


class Applier:
    """`canary`: prove every changed gateway config on a canary before anything stops (on by
    default; off for hosts that cannot afford a second gateway process for ~10 s)."""

    def __init__(self, *, runtime: Runtime, prober: Prober, config: GatewayConfig, emit: Emit,
                 gate: Gate = Gate(), clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, canary: bool = True) -> None:
        self.runtime, self.prober, self.config, self.emit = runtime, prober, config, emit
        self.gate_settings, self.clock, self.sleep = gate, clock, sleep
        self.canary = canary
        self.pass_id = ""   # the pass being applied: its own failed containers are stopped without grace

    def apply(self, plan: Plan, desired: Desired, *, revision: str, pass_id: str,
              verify_unchanged: bool = False, canary: bool = True) -> Done:
        """Run `plan`. `verify_unchanged`: also check that each unchanged container answers its
        health endpoint (one probe, then the full gate if it does not): after an interrupted
        pass, a container created by it may still be starting.

        `canary=False` skips the canary for this call; reconcile passes it when going back to
        the last good commit. That config was proven already (by its own canary, then by the
        live gateway listing its names after the swap), a rollback must be as short as it can
        be while nothing may serve, and it must not fail for a reason of the canary's own (no
        free port, a slow second boot). The check of the live gateway after the swap still
        runs: a rollback that does not serve its names is reported as failed."""
        done = Done()
        self.pass_id = pass_id
        current: str | None = None
        early: set[str] = set()   # steps run before the canary
        staged = False
        try:
            swap = self.config.live_digest() != desired.config_digest
            if swap:
                staged = True
                self.config.stage(desired.config_text)
                self.config.check_staged(desired.litellm_config, desired.config_digest)
                self.emit("config_staged", digest=desired.config_digest[:12])
                if self.canary and canary:
                    # A new cache first, when starting it stops nothing: a canary that cannot reach
                    # its Redis boots three times slower (35 s instead of 12 on a first pass).
                    for step in _cache_first(plan):
                        assert step.desired is not None
                        current = self._run(step, step.desired, done, stack=desired.stack, revision=revision)
                        self._gate(current, step.desired)
                        self.runtime.keep_running(current)
                        done.add("healthy", step.desired.name, current)
                        early.add(step.name)
                        current = None
                    self._canary(desired, done, revision=revision)
            changes = [s for s in plan.changes if s.name not in early]
            for step in changes:
                if step.stops_first and step.actual is not None:
                    self._set_aside(step.actual, done, why="frees a GPU or port first")
            for step in changes:
                if step.action is Action.REMOVE:
                    if step.actual is not None and step.actual.component == "canary":
                        self._remove_canary(step.actual.id, step.actual.name, done)
                    elif step.actual is not None:
                        self._set_aside(step.actual, done, why="removed")
                    continue
                spec = step.desired
                assert spec is not None
                if spec.component == "gateway" and swap:
                    if step.action is Action.RESTART:  # the live file may have been edited by hand
                        kept = self.config.keep_live_copy()
                        if kept:
                            done.add("kept", spec.name, "", copy=kept)
                            self.emit("config_edit_kept", level="warning", path=kept)
                    self._swap(done)
                    swap = False
                current = self._run(step, spec, done, stack=desired.stack, revision=revision)
                self._gate(current, spec)
                if spec.component == "gateway":
                    self._serves(current, spec, desired, revision=revision, what=f"gateway {spec.name}")
                self.runtime.keep_running(current)
                done.add("healthy", spec.name, current)
                current = None
            if swap:  # the gateway needed no restart, but its file was missing: put it back
                self._swap(done)
            if verify_unchanged:
                for step in plan.steps:
                    if step.action is Action.UNCHANGED and step.desired is not None and step.actual is not None:
                        current = step.actual.id
                        self._verify(current, step.desired, done)
                        if step.desired.component == "gateway":
                            self._serves(current, step.desired, desired, revision=revision,
                                         what=f"gateway {step.desired.name}")
                        current = None
        except FaultError as exc:
            host = (isinstance(exc, (StateError, Interfered))
                    or isinstance(exc, EngineError) and exc.fault.engine_lost)
            raise ApplyFailed(exc.fault, done, container_id=current, host_fault=host) from None
        except Exception as exc:  # a bug or an unexpected OSError: still go back, and say what broke
            raise ApplyFailed(Fault("pass", f"unexpected {type(exc).__name__}: {exc}",
                                    "this is a bug in llm-gitops; please report it with `llm-gitops history`"),
                              done, container_id=current) from exc
        finally:
            if staged and not done.config_swapped:  # failed, cancelled: the staged commit is not coming
                self.config.discard_staged()
        self._clean_up(done)
        return done

    def _canary(self, desired: Desired, done: Done, *, revision: str) -> None:
        """Boot the gateway image on the staged config, on a free port of 127.0.0.1, and
        require its /v1/models to list exactly the commit's public names. Whatever happens
        (a failure, a cancelled pass), the canary is removed before this returns or raises;
        one leaked by a SIGKILL carries our labels and component=canary, and the next pass
        removes it (plan)."""
        gateway = next((c for c in desired.containers if c.component == "gateway"), None)
        if gateway is None:
            return
        spec = canary_container(gateway, stack=desired.stack, port=self.prober.free_port(CANARY_HOST),
                                pass_id=self.pass_id)
        t0 = self.clock()
        cid = ""
        self.emit("canary_start", container=spec.name, port=spec.port)
        try:
            cid = self.runtime.create(spec, stack=desired.stack, revision=revision, pass_id=self.pass_id)
            self.runtime.start(cid)
            try:
                self._gate(cid, spec)
            except HealthError as exc:  # the commit's config does not boot: say so, not "a container"
                raise HealthError(Fault(f"commit {revision[:12]}", f"its gateway config failed on the canary "
                                        f"{spec.name}: {exc.fault.message}", exc.fault.hint)) from None
            self._serves(cid, spec, desired, revision=revision, what=f"canary {spec.name}")
        finally:
            if cid:
                self._remove_canary(cid, spec.name, done)
        done.add("canary", spec.name, cid, port=spec.port, seconds=round(self.clock() - t0, 1))
        self.emit("canary_passed", container=spec.name, seconds=round(self.clock() - t0, 1))

    def _remove_canary(self, cid: str, name: str, done: Done) -> None:
        try:
            self.runtime.remove(cid)
            done.add("removed", name, cid, why="canary")
        except FaultError as exc:  # the next pass finds it by its labels and removes it
            self.emit("canary_not_removed", level="warning", container=name, id=cid[:12], error=exc.fault.message)

    def _serves(self, cid: str, spec: ContainerSpec, desired: Desired, *, revision: str, what: str) -> None:
        """The gateway `spec` (healthy already) lists exactly the public names of `desired`
        on /v1/models. A gateway that answers with another list fails at once; one that gives
        no list yet (a proxy still loading its router) is asked again for MODELS_RETRY_S."""
        config = desired.litellm_config
        want = public_names(config)
        deadline = self.clock() + MODELS_RETRY_S
        while True:
            names, seen = self.prober.served_models(base_url(spec), master_key_env(config))
            if names is not None or self.clock() >= deadline:
                break
            self.sleep(self.gate_settings.interval_s)
        subject = f"commit {revision[:12]}"
        if names is None:
            raise GatewayMismatch(Fault(subject, f"the {what} answered {base_url(spec)}/v1/models with {seen}, "
                                        "not a list of models", _logs_hint(self._logs(cid), errors_only=True)))
        missing, extra = sorted(set(want) - set(names)), sorted(set(names) - set(want))
        if missing or extra:
            parts = ([f"does not serve {', '.join(missing)}"] if missing else []) + (
                [f"serves {', '.join(extra)}, which the commit does not name"] if extra else [])
            raise GatewayMismatch(Fault(
                subject, f"the {what} " + " and ".join(parts) + f" (it lists: {', '.join(names) or 'nothing'})",
                "LiteLLM dropped a deployment it could not create, or took a name with `*` as a wildcard route: "
                "fix the spec and commit again; " + _logs_hint(self._logs(cid), errors_only=True)))

    def _verify(self, cid: str, spec: ContainerSpec, done: Done) -> None:
        """An unchanged container of a commit not yet proven good (an interrupted pass may have
        started it): one probe, and the full gate only if that fails."""
        if not self.prober.healthy(spec.health)[0]:
            if not self.runtime.state(cid).running:  # stopped by hand during the pass
                self.runtime.start(cid)
                done.add("started", spec.name, cid, why="stopped during the pass")
            self._gate(cid, spec)
        self.runtime.keep_running(cid)  # it may come from the interrupted pass, still on restart policy "no"

    def _clean_up(self, done: Done) -> None:
        """Remove what was set aside. Best effort: the pass has succeeded, and a container
        that could not be removed now is removed by the next pass (it is set aside)."""
        for cid in done.set_aside:
            try:
                self.runtime.remove(cid)
                done.removed.append(cid)
            except FaultError as exc:
                self.emit("cleanup_failed", level="warning", id=cid[:12], error=exc.fault.message)

    def _swap(self, done: Done) -> None:
        self.config.swap()
        done.config_swapped = True
        self.emit("config_swapped")

    def _run(self, step: Step, spec: ContainerSpec, done: Done, *, stack: str, revision: str) -> str:
        old = step.actual
        if step.action in (Action.CREATE, Action.RECREATE):
            if old is not None and old.id not in done.set_aside:
                self._set_aside(old, done, why="replaced")
            if step.reuse is not None:
                cid = step.reuse.id
                self.runtime.rename(cid, spec.name)
                done.add("restored", spec.name, cid, revision=step.reuse.revision)
            else:
                cid = self.runtime.create(spec, stack=stack, revision=revision, pass_id=self.pass_id)
                done.add("created", spec.name, cid, spec_hash=spec.spec_hash[:12])
        else:
            assert old is not None
            cid = old.id
            if step.action is Action.RESTART and old.running:
                self.runtime.stop(cid)
            done.add("started" if step.action is Action.START else "restarted", spec.name, cid)
        self.emit("starting", container=spec.name, id=cid[:12], action=step.action.value,
                  reasons=list(step.reasons))
        self.runtime.start(cid)
        return cid

    def _set_aside(self, c: ObservedContainer, done: Done, *, why: str) -> None:
        if c.id in done.set_aside:  # already stopped first, to free its GPU or port
            return
        try:
            if c.running:
                # One that serves nothing (it failed in this very pass, or never got healthy
                # after an interrupted one) gets no graceful stop: a booting LiteLLM ignores
                # SIGTERM for the whole 30 s.
                self.runtime.stop(c.id, timeout_s=None if self._serving(c) else FAILED_STOP_S)
                done.add("stopped", c.name, c.id, why=why)
                self.emit("stopped", container=c.name, id=c.id[:12], why=why)
            if not c.aside:
                self.runtime.rename(c.id, aside_name(c))
        except EngineNotFound:
            self.emit("already_gone", level="warning", container=c.name, id=c.id[:12])
            return  # removed by hand meanwhile: what this step wanted
        done.set_aside.append(c.id)

    def _serving(self, c: ObservedContainer) -> bool:
        if self.pass_id and c.labels.get(PASS) == self.pass_id:
            return False
        health = (c.spec or {}).get("health")
        if not isinstance(health, dict):
            return True
        try:
            return self.prober.healthy(Health(**health))[0]
        except (TypeError, ValueError):
            return True

    def _vanishing(self, cid: str) -> bool:
        """`docker rm -f` kills (exit 137) before it removes: look again before blaming the commit."""
        self.sleep(0.3)
        return self.runtime.state(cid).status in ("missing", "removing")

    def _logs(self, cid: str) -> str:
        try:
            return self.runtime.logs(cid, tail=40)
        except FaultError:
            return ""

    def _gate(self, cid: str, spec: ContainerSpec) -> None:
        g = self.gate_settings
        t0 = self.clock()
        deadline = t0 + spec.startup_timeout_s
        restarts = self.runtime.state(cid).restart_count
        good, seen, next_note = 0, "", t0 + g.progress_every_s
        while True:
            st = self.runtime.state(cid)
            if st.status == "missing" or not st.running and self._vanishing(cid):
                raise Interfered(Fault(f"container {spec.name}", "was removed outside llm-gitops while the pass "
                                       "waited for it", "leave the stack's containers to llm-gitops; the next pass "
                                       "re-creates it"))
            if not st.running or st.restart_count > restarts:
                # With restart policy unless-stopped the engine may already have restarted it, and
                # then the exit status it reports is the new run's: say what is known.
                how = (f"exited with status {st.exit_code}" if not st.running and st.status != "restarting"
                       else f"crashed and the engine is restarting it (restart {st.restart_count})")
                raise HealthError(Fault(
                    f"container {spec.name}",
                    f"{how} {self.clock() - t0:.1f} s after start, before it was healthy"
                    + (f": {st.error}" if st.error else ""),
                    _logs_hint(self._logs(cid))))
            ok, seen = self.prober.healthy(spec.health)
            good = good + 1 if ok else 0
            if good >= g.samples:
                self.emit("healthy", container=spec.name, seconds=round(self.clock() - t0, 1))
                return
            now = self.clock()
            if now >= deadline:
                raise HealthError(Fault(
                    f"container {spec.name}",
                    f"not healthy within its startup_timeout_s ({spec.startup_timeout_s} s): "
                    f"{spec.health.url} answered {seen!r}",
                    "if it is only slow, raise container.startup_timeout_s; " + _logs_hint(self._logs(cid))))
            if now >= next_note:
                self.emit("waiting", container=spec.name, seconds=round(now - t0), of=spec.startup_timeout_s,
                          last=seen)
                next_note = now + g.progress_every_s
            self.sleep(g.interval_s)


def _cache_first(plan: Plan) -> list[Step]:
    """The cache's step when it can run before the canary: it creates or starts a cache where
    none runs, and the plan stops nothing first (so no port or GPU it needs is held)."""
    if any(s.stops_first for s in plan.changes):
        return []
    return [s for s in plan.changes if s.component == "cache" and s.desired is not None and s.reuse is None
            and (s.action is Action.CREATE or s.action is Action.START and s.actual is not None
                 and not s.actual.running)]


def _logs_hint(logs: str, *, errors_only: bool = False) -> str:
    """The last log lines, runs of the same line folded into one (`x 10`). `errors_only`:
    only lines that speak of an error or a deployment (LiteLLM's banner and access log are long)."""
    folded: list[list[Any]] = []
    lines = logs.splitlines()
    if errors_only:
        lines = [ln for ln in lines if any(w in ln.lower() for w in ("error", "exception", "deployment", "refused"))]
    for line in lines:
        if folded and folded[-1][0] == line:
            folded[-1][1] += 1
        else:
            folded.append([line, 1])
    shown = [f"      | {line}" + (f"   (x {n})" if n > 1 else "") for line, n in folded[-12:]]
    if not shown:
        return "its log shows no error" if errors_only else "it logged nothing"
    return "its last log lines:\n" + "\n".join(shown)
