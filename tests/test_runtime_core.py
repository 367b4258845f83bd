"""The acting core in isolation: live planning (set-aside containers, drifted config, what
blocks a plan), apply's ordering on a fake runtime, and the state directory's files.

The same behaviours run against the real engine in tests/engine; these pin the logic down
case by case, fast.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, read_spec_dir
from controller.apply import Applier, ApplyFailed, Gate
from controller.errors import Cancelled, StateError
from controller.observed import ASIDE, Observation, ObservedContainer
from controller.plan import Action, actual_from, conflicts, plan, ports_to_probe
from controller.ports import ContainerState
from controller.record import Quarantine, Record
from controller.render import Desired, render
from controller.spec import load_files


def demo(**changes: Any) -> Desired:
    files = read_spec_dir(ROOT / "config" / "demo")
    for old, new in changes.items():
        files["providers.yaml"] = files["providers.yaml"].replace(old, new)
    loaded = load_files(files)
    assert loaded.spec is not None and not loaded.errors, loaded.problems
    return render(loaded.spec)


def observed(desired: Desired, **over: Any) -> list[ObservedContainer]:
    return [dataclasses.replace(c, id=f"{c.name}-id".ljust(64, "0"), **over) for c in actual_from(desired)]


# --------------------------------------------------------------------------- live planning


def test_a_set_aside_container_with_the_wanted_spec_is_brought_back_not_recreated() -> None:
    old, new = demo(), demo(**{'"2048"]': '"2048", --seed, "1"]'})
    running = {c.name: c for c in observed(new)}  # the new vLLM runs (a failed pass)...
    vllm_old = next(c for c in observed(old) if c.key == "vllm-tiny")
    aside = dataclasses.replace(vllm_old, name=f"{vllm_old.name}{ASIDE}abc", original_name=vllm_old.name,
                                running=False, id="a" * 64)  # ...and the old one waits aside
    steps = plan(old, [*running.values(), aside]).changes
    assert [(s.action, s.name) for s in steps] == [(Action.RECREATE, "demo-vllm-tiny")]
    assert steps[0].reuse == aside and "brings back the stopped container" in steps[0].reasons[-1]


def test_a_container_listed_twice_is_planned_once() -> None:
    old, new = demo(), demo(**{'"2048"]': '"2048", --seed, "1"]'})
    vllm_old = next(c for c in observed(old) if c.key == "vllm-tiny")
    aside = dataclasses.replace(vllm_old, name=f"{vllm_old.name}{ASIDE}abc", original_name=vllm_old.name,
                                running=False, id="a" * 64)
    running = [c for c in observed(new) if c.key != "vllm-tiny"]
    steps = plan(old, [*running, aside, aside]).changes  # e.g. observed as this stack's and as the owner's
    assert [(s.action, s.name, s.reuse == aside) for s in steps] == [(Action.CREATE, "demo-vllm-tiny", True)]


def test_a_set_aside_container_that_matches_nothing_is_removed_last() -> None:
    desired = demo()
    stale = dataclasses.replace(observed(desired)[1], name=f"demo-vllm-tiny{ASIDE}x", original_name="demo-vllm-tiny",
                                spec_hash="0" * 64, running=False, id="s" * 64)
    steps = plan(desired, [*observed(desired), stale]).changes
    assert [(s.action, s.name) for s in steps] == [(Action.REMOVE, stale.name)]
    assert "set aside by an earlier pass" in steps[0].reasons[0]


def test_a_hand_edited_gateway_config_restarts_only_the_gateway() -> None:
    desired = demo()
    steps = plan(desired, observed(desired), live_config_digest="f" * 64).changes
    assert [(s.action, s.name) for s in steps] == [(Action.RESTART, "demo-gateway")]
    assert plan(desired, observed(desired), live_config_digest=desired.config_digest).changes == ()


def test_what_blocks_a_plan_is_named_with_what_to_do() -> None:
    desired = demo()
    the_plan = plan(desired, [])
    faults = conflicts(desired, the_plan, {"demo-cache": "cccccccccccc, without llm-gitops labels"}, [18001])
    assert [f.subject for f in faults] == ["container demo-cache", "port 18001"]
    assert "(cccccccccccc, without llm-gitops labels)" in faults[0].message
    assert "docker rm -f demo-cache" in faults[0].hint
    assert "demo-vllm-tiny" in faults[1].message and "ss -ltnp 'sport = :18001'" in faults[1].hint


def test_only_ports_that_none_of_our_running_containers_hold_are_probed() -> None:
    desired = demo()
    assert [p for _, p in ports_to_probe(plan(desired, []), [])] == [14000, 16379, 18001, 18002, 18003]
    # vllm-tiny moves to a new port; everything else keeps running on its own
    moved = demo(**{"127.0.0.1:18001": "127.0.0.1:18011"})
    assert ports_to_probe(plan(moved, observed(desired)), observed(desired)) == [("127.0.0.1", 18011)]


# --------------------------------------------------------------------------- apply on a fake runtime


class FakeRuntime:
    """Records calls; every container is healthy at once unless named in `crash`."""

    def __init__(self, crash: set[str] = frozenset()) -> None:
        self.calls: list[tuple[str, str]] = []
        self.stop_timeouts: list[int | None] = []
        self.names: dict[str, str] = {}
        self.crash = crash

    def observe(self, stack: str, names: Any = ()) -> Observation:
        raise AssertionError("apply does not observe")

    def missing_images(self, images: Any) -> list[str]:
        return []

    def create(self, spec: Any, **_: Any) -> str:
        cid = f"new-{spec.name}"
        self.names[cid] = spec.name
        self.calls.append(("create", spec.name))
        return cid

    def _name(self, cid: str) -> str:
        return self.names.get(cid, cid.removesuffix("-id").rstrip("0").removesuffix("-id"))

    def start(self, cid: str) -> None:
        self.calls.append(("start", self._name(cid)))

    def stop(self, cid: str, *, timeout_s: int | None = None) -> None:
        self.calls.append(("stop", self._name(cid)))
        self.stop_timeouts.append(timeout_s)

    def rename(self, cid: str, name: str) -> None:
        self.calls.append(("rename", name))

    def remove(self, cid: str) -> None:
        self.calls.append(("remove", self._name(cid)))

    def keep_running(self, cid: str) -> None:
        pass

    def state(self, cid: str) -> ContainerState:
        crashed = self._name(cid) in self.crash
        return ContainerState(id=cid, name="", status="exited" if crashed else "running", running=not crashed,
                              exit_code=1 if crashed else None)

    def logs(self, cid: str, tail: int = 20) -> str:
        return "boom"


DEMO_NAMES = ["chat", "phi-mini", "qwen-tiny", "tinyllama:1.1b"]


class FakeProber:
    """Every container healthy; every gateway (canary or live) lists `names` (config/demo's)."""

    def __init__(self, names: list[str] | None = None) -> None:
        self.names = list(DEMO_NAMES) if names is None else names
        self.asked: list[tuple[str, str | None]] = []

    def healthy(self, health: Any) -> tuple[bool, str]:
        return True, "HTTP 200"

    def port_taken(self, host: str, port: int) -> bool:
        return False

    def free_port(self, host: str) -> int:
        return 45678

    def served_models(self, base_url: str, key_env: str | None) -> tuple[list[str] | None, str]:
        self.asked.append((base_url, key_env))
        return list(self.names), "HTTP 200"


class FakeConfig:
    def __init__(self) -> None:
        self.digest, self.staged, self.events = "", "", []

    def live_digest(self) -> str:
        return self.digest

    def stage(self, text: str) -> None:
        self.staged = text
        self.events.append("stage")

    def check_staged(self, expected: Any, digest: str) -> None:
        self.events.append("check")

    def swap(self) -> None:
        self.events.append("swap")

    def keep_live_copy(self) -> str:
        self.events.append("keep")
        return "/kept"

    def discard_staged(self) -> None:
        self.events.append("discard")


def _applier(runtime: FakeRuntime, config: FakeConfig, prober: FakeProber | None = None, **kw: Any) -> Applier:
    return Applier(runtime=runtime, prober=prober or FakeProber(), config=config, emit=lambda *a, **k: None,
                   gate=Gate(samples=1, interval_s=0), sleep=lambda s: None, **kw)


def test_two_providers_swapping_ports_are_both_stopped_before_either_starts() -> None:
    before = demo()
    swapped = demo(**{"127.0.0.1:18001": "127.0.0.1:PORTX", "127.0.0.1:18002": "127.0.0.1:18001",
                      "127.0.0.1:PORTX": "127.0.0.1:18002"})
    the_plan = plan(swapped, observed(before))
    runtime, config = FakeRuntime(), FakeConfig()
    _applier(runtime, config).apply(the_plan, swapped, revision="r", pass_id="p")
    swapping = {"demo-vllm-tiny", "demo-ollama-tiny"}
    stops = [i for i, c in enumerate(runtime.calls) if c[0] == "stop" and c[1] in swapping]
    starts = [i for i, c in enumerate(runtime.calls) if c[0] == "start" and "canary" not in c[1]]
    assert len(stops) == 2 and max(stops) < min(starts), runtime.calls
    assert config.events == ["stage", "check", "swap"]  # the gateway's config changed too (api_base ports)
    # the changed config was proven on a canary, removed again, before anything stopped
    assert runtime.calls[:3] == [("create", "demo-gateway_canary_p"), ("start", "demo-gateway_canary_p"),
                                 ("remove", "demo-gateway_canary_p")]


def test_a_failed_start_stops_the_pass_there_and_says_what_was_done() -> None:
    before, after = demo(), demo(**{'"2048"]': '"2048", --seed, "1"]'})
    runtime, config = FakeRuntime(crash={"demo-vllm-tiny"}), FakeConfig()
    config.digest = before.config_digest
    with pytest.raises(ApplyFailed) as caught:
        _applier(runtime, config).apply(plan(after, observed(before)), after, revision="r", pass_id="p")
    assert caught.value.fault.subject == "container demo-vllm-tiny"
    assert "exited with status 1" in caught.value.fault.message and "boom" in caught.value.fault.hint
    assert caught.value.container_id == "new-demo-vllm-tiny"
    assert [a["action"] for a in caught.value.done.actions] == ["stopped", "created"]
    assert not [c for c in runtime.calls if c[0] == "remove"]  # the old one waits aside for the rollback


# --------------------------------------------------------------------------- the state directory


def test_state_files_are_private_and_survive_a_torn_history_line(tmp_path: Path) -> None:
    from controller.adapters.state import StateDir
    st = StateDir(tmp_path / "state")
    rec = Record(repo="/r", last_good="a" * 40, quarantined={"b" * 40: Quarantine("health", "2026-01-01T00:00:00Z")})
    st.save(rec)
    assert st.record() == rec
    assert (st.path / "record.json").stat().st_mode & 0o777 == 0o600
    assert st.path.stat().st_mode & 0o777 == 0o700
    st.append_history({"pass": 1})
    with open(st.path / "history.jsonl", "a") as f:
        f.write('{"pass": 2, "outc')  # a crash in the middle of an append
    assert st.history() == [{"pass": 1}]
    st.stage("model_list: []\n")
    st.check_staged({"model_list": []}, __import__("hashlib").sha256(b"model_list: []\n").hexdigest())
    st.swap()
    assert (st.gateway_dir / "config.yaml").stat().st_mode & 0o777 == 0o600
    assert not list(st.path.rglob(".*.tmp"))


def test_a_staged_config_that_is_discarded_leaves_nothing_and_the_live_file_alone(tmp_path: Path) -> None:
    from controller.adapters.state import StateDir
    st = StateDir(tmp_path / "state")
    (st.gateway_dir / "config.yaml").write_text("live\n")
    st.stage("next\n")
    st.discard_staged()
    assert sorted(p.name for p in (st.gateway_dir / ".staging").iterdir()) == []
    assert (st.gateway_dir / "config.yaml").read_text() == "live\n"
    st.discard_staged()  # nothing staged: nothing to do


def test_an_unreadable_record_names_the_file_and_what_to_do(tmp_path: Path) -> None:
    from controller.adapters.state import StateDir
    st = StateDir(tmp_path)
    (tmp_path / "record.json").write_text("{not json")
    with pytest.raises(StateError) as caught:
        st.record()
    assert "record.json is not a readable record" in str(caught.value) and "move" in caught.value.fault.hint


def test_the_lock_admits_one_holder_and_names_it(tmp_path: Path) -> None:
    from controller.adapters.state import StateDir
    with StateDir(tmp_path).locked("apply"):
        with pytest.raises(StateError) as caught, StateDir(tmp_path).locked("second"):
            pass
        assert f"pid {os.getpid()}, apply" in str(caught.value)
    with StateDir(tmp_path).locked("third"):
        pass


def test_taking_the_lock_removes_temp_files_of_dead_writers_only(tmp_path: Path) -> None:
    """A `kill -9` inside an atomic write leaves `.<name>.<pid>.tmp`; the next holder of the
    lock removes those of writers that are gone, and keeps a live process's."""
    import subprocess
    import sys

    from controller.adapters.state import StateDir
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead = int(gone.stdout)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "gateway" / ".staging").mkdir(parents=True)
        (tmp_path / "requests").mkdir()
        leftovers = [tmp_path / f".record.json.{dead}.tmp", tmp_path / "gateway" / f".config.yaml.{dead}.tmp",
                     tmp_path / "gateway" / ".staging" / f".config.yaml.{dead}.tmp",
                     tmp_path / "requests" / f".r1.json.{dead}.tmp"]
        kept = [tmp_path / "requests" / f".r2.json.{sleeper.pid}.tmp", tmp_path / "notes.tmp"]
        for path in leftovers + kept:
            path.write_text("half")
        with StateDir(tmp_path).locked("apply"):
            assert [p for p in leftovers if p.exists()] == []
            assert all(p.exists() for p in kept)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_secret_fingerprints_change_with_the_value_and_never_hold_it(tmp_path: Path) -> None:
    from controller.adapters.state import StateDir
    st = StateDir(tmp_path)
    one = st.fingerprints({"TOKEN"}, {"TOKEN": "hunter2"})
    assert st.fingerprints({"TOKEN"}, {"TOKEN": "hunter2"}) == one
    assert st.fingerprints({"TOKEN"}, {"TOKEN": "hunter3"}) != one
    assert st.fingerprints({"TOKEN"}, {}) == {}
    assert b"hunter2" not in b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert json.dumps(one).find("hunter2") == -1


def test_a_dead_engine_is_reported_and_nothing_is_recorded_as_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import GitRepo
    from controller.cli import main
    (tmp_path / "repo").mkdir()
    repo = GitRepo(tmp_path / "repo")
    commit = repo.commit(read_spec_dir(ROOT / "config" / "demo"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    monkeypatch.setenv("LITELLM_MASTER_KEY", "sk-test-not-used")
    code = main(["apply", "--repo", str(repo.path), "--state-dir", str(tmp_path / "state")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"docker engine unix://{tmp_path}/no-engine.sock: does not answer" in err
    assert "make engine" in err and "Traceback" not in err
    from controller.adapters.state import StateDir
    record = StateDir(tmp_path / "state").record()
    assert record.quarantined == {} and record.last_applied is None and commit not in repr(record)


@pytest.mark.parametrize("said", ["transport is closing: unavailable",
                                  'connection error: desc = "transport: Error while dialing dial unix '
                                  '/run/containerd/containerd.sock: connect: connection refused": unavailable'])
def test_an_engine_losing_its_runtime_mid_call_is_the_engine_not_the_container(said: str) -> None:
    """What dockerd answers while it is being restarted: a 500 about the container named, that is
    about the engine. Reported as the engine (a host fault: the commit is not quarantined)."""
    import docker.errors
    import requests
    from types import SimpleNamespace

    from controller.adapters.docker import DockerRuntime
    from controller.errors import EngineError

    def refuse(*_: Any, **__: Any) -> None:
        response = requests.Response()
        response.status_code = 500
        raise docker.errors.APIError("500 Server Error", response=response, explanation=said)

    api = SimpleNamespace(start=refuse, create_container=refuse)
    runtime = DockerRuntime(gateway_dir=Path("/nonexistent"), environ={"DOCKER_HOST": "unix:///x.sock"},
                            client=SimpleNamespace(api=api))
    with pytest.raises(EngineError) as caught:
        runtime.start("c" * 64)
    assert caught.value.fault.subject == "docker engine unix:///x.sock"
    assert "does not answer" in caught.value.fault.message and said in caught.value.fault.message
    # an answer about the container is still about the container (a refused create quarantines)
    response = requests.Response()
    response.status_code = 500
    api.start = lambda *_: (_ for _ in ()).throw(docker.errors.APIError(
        "500", response=response, explanation="could not select device driver \"\" with capabilities: [[gpu]]"))
    with pytest.raises(EngineError) as caught:
        runtime.start("c" * 64)
    assert caught.value.fault.subject.startswith("container ") and "NVIDIA" in caught.value.fault.hint


# --------------------------------------------------------------------------- probes


def test_a_garbled_health_answer_is_unhealthy_not_a_crash() -> None:
    import socket
    import threading
    from controller.adapters.probe import NetProber
    from controller.render.containers import Health
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            conn.recv(1024)
            conn.sendall(b"-ERR unknown command\r\n")
            conn.close()

    threading.Thread(target=answer, daemon=True).start()
    port = server.getsockname()[1]
    prober = NetProber(timeout_s=2)
    ok, seen = prober.healthy(Health(kind="http", url=f"http://127.0.0.1:{port}/health"))
    assert not ok and "not an HTTP answer" in seen
    ok, seen = prober.healthy(Health(kind="redis", url=f"redis://127.0.0.1:{port}"))
    assert not ok and seen == "-ERR unknown command"
    assert prober.port_taken("127.0.0.1", port) is True  # someone listens there
    server.close()


# --------------------------------------------------------------------------- reconcile on fakes


class MemoryStore:
    def __init__(self) -> None:
        self.rec, self.entries, self.saves = Record(), [], 0
        self.snapshots: dict[str, Desired] = {}

    def save_snapshot(self, commit: str, desired: Desired) -> None:
        self.snapshots = {commit: desired}

    def snapshot(self, commit: str | None = None) -> Desired | None:
        return self.snapshot_of(commit)[1]

    def snapshot_of(self, commit: str | None = None) -> tuple[str | None, Desired | None]:
        for c, d in self.snapshots.items():
            if commit in (None, c):
                return c, d
        return None, None

    def record(self) -> Record:
        return self.rec

    def save(self, record: Record) -> None:
        self.rec, self.saves = record, self.saves + 1

    def append_history(self, entry: Any) -> None:
        self.entries.append(dict(entry))

    def history(self) -> list[dict[str, Any]]:
        return self.entries


class ObservingRuntime(FakeRuntime):
    def __init__(self, running: list[ObservedContainer]) -> None:
        super().__init__()
        self.running = running

    def observe(self, stack: str, names: Any = ()) -> Observation:
        return Observation(containers=tuple(c for c in self.running if c.name.startswith(stack + "-")))


class ScriptedApplier:
    """apply() raises the next fault in `script` (None: succeeds)."""

    def __init__(self, *script: Any) -> None:
        self.script, self.calls, self.kwargs = list(script), [], []

    def apply(self, the_plan: Any, desired: Desired, **kwargs: Any) -> Any:
        from controller.apply import Done
        self.calls.append(desired.stack)
        self.kwargs.append(kwargs)
        fault = self.script.pop(0) if self.script else None
        if fault is not None:
            raise ApplyFailed(fault[0], Done(), host_fault=fault[1])
        return Done()


def _reconciler(store: MemoryStore, runtime: Any, applier: Any, specs: dict[str, Any]) -> Any:
    from controller.reconcile import Reconciler
    config = FakeConfig()
    config.digest = render(specs[GOOD].spec).config_digest  # the good commit's config is live
    return Reconciler(runtime=runtime, prober=FakeProber(), store=store, config=config,
                      load=lambda commit: specs[commit], fingerprints=lambda names: {},
                      environ={"LITELLM_MASTER_KEY": "sk-test"},
                      emit=lambda *a, **k: None, applier=applier)


def _loaded(**changes: Any) -> Any:
    files = read_spec_dir(ROOT / "config" / "demo")
    for old, new in changes.items():
        files["providers.yaml"] = files["providers.yaml"].replace(old, new)
    return load_files(files)


GOOD, BAD = "a" * 40, "b" * 40
SPECS = {GOOD: _loaded(), BAD: _loaded(**{'"2048"]': '"2048", --seed, "1"]'})}


def _served_good() -> tuple[MemoryStore, list[ObservedContainer]]:
    store = MemoryStore()
    good = render(SPECS[GOOD].spec)
    store.rec = Record(last_applied=GOOD, last_good=GOOD, last_attempted=GOOD, applied_stack="demo",
                       applied_hashes={c.name: c.spec_hash for c in good.containers})
    return store, observed(good)


def test_an_engine_that_dies_mid_pass_quarantines_nothing() -> None:
    from controller.errors import Fault
    store, running = _served_good()
    applier = ScriptedApplier((Fault("docker engine unix:///x", "does not answer"), True), None)
    reconciler = _reconciler(store, ObservingRuntime(running), applier, SPECS)
    _timed(reconciler)  # it waits a (fake) second for the engine first
    result = reconciler.run(BAD)
    assert result.outcome == "failed" and store.rec.quarantined == {}
    assert result.rollback is not None and result.rollback["ok"]  # and it went back


class RestartingEngine(ObservingRuntime):
    """An engine that, once `die(n)` is called, does not answer the next n times it is asked."""

    def __init__(self, running: list[ObservedContainer]) -> None:
        super().__init__(running)
        self.down_left = 0

    def die(self, times: int) -> None:
        self.down_left = times

    def observe(self, stack: str, names: Any = ()) -> Observation:
        from controller.errors import EngineError, Fault
        if self.down_left > 0:
            self.down_left -= 1
            raise EngineError(Fault("docker engine unix:///x", "does not answer"))
        return super().observe(stack, names)


class EngineDyingApplier(ScriptedApplier):
    """The first apply() loses the engine for `down` askings and fails naming it."""

    def __init__(self, runtime: RestartingEngine, down: int) -> None:
        from controller.errors import Fault
        super().__init__((Fault("docker engine unix:///x", "does not answer"), True), None)
        self.runtime, self.down = runtime, down

    def apply(self, the_plan: Any, desired: Desired, **kwargs: Any) -> Any:
        if len(self.calls) == 0:
            self.runtime.die(self.down)
        return super().apply(the_plan, desired, **kwargs)


class Clock:
    """A clock that only a sleep moves: waits in tests take no time and are counted."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _timed(reconciler: Any) -> Clock:
    clock = Clock()
    reconciler.sleep, reconciler.clock = clock.sleep, lambda: clock.now
    return clock


@pytest.mark.parametrize("down, went_back", [(5, True), (1000, False)])
def test_a_pass_that_lost_the_engine_waits_for_it_before_going_back(down: int, went_back: bool) -> None:
    """A daemon restart mid-pass: going back at once would fail too. The pass asks the engine
    again once a second, ENGINE_WAIT_S at most, and goes back once it answers."""
    from controller.reconcile import ENGINE_WAIT_S
    store, running = _served_good()
    runtime = RestartingEngine(running)
    applier = EngineDyingApplier(runtime, down)
    reconciler = _reconciler(store, runtime, applier, SPECS)
    clock = _timed(reconciler)
    result = reconciler.run(BAD)
    assert result.outcome == "failed" and store.rec.quarantined == {}
    if went_back:
        assert clock.slept == [1.0] * (down + 1) and len(applier.calls) == 2  # a second more: then it answered
        assert result.rollback is not None and result.rollback["ok"], result.message
        assert f"{GOOD[:12]} keeps serving" in result.message  # the fake applier changed nothing
    else:
        assert clock.now == ENGINE_WAIT_S  # bounded
        assert result.rollback is not None and not result.rollback["ok"]
        assert "failed too: docker engine unix:///x: does not answer" in result.message


def test_a_go_back_that_loses_the_engine_again_waits_and_tries_again() -> None:
    """A dying daemon can still answer on a kept connection: the probe says it is back, the
    go-back then loses it. The pass waits again and goes back once the engine is there."""
    from controller.errors import Fault
    store, running = _served_good()
    lost = (Fault("docker engine unix:///x", "does not answer"), True)
    applier = ScriptedApplier(lost, lost, None)
    reconciler = _reconciler(store, ObservingRuntime(running), applier, SPECS)
    clock = _timed(reconciler)
    result = reconciler.run(BAD)
    assert len(applier.calls) == 3 and clock.slept == [1.0, 1.0]
    assert result.rollback is not None and result.rollback["ok"] and store.rec.quarantined == {}


def test_a_cancelled_wait_for_the_engine_does_not_go_back() -> None:
    """SIGTERM or a newer commit while the pass waits for the engine: it stops waiting and
    leaves going on to the next pass, which plans from what runs."""
    from controller.errors import Cancelled
    store, running = _served_good()
    runtime = RestartingEngine(running)
    applier = EngineDyingApplier(runtime, 1000)
    reconciler = _reconciler(store, runtime, applier, SPECS)

    def cancelled(seconds: float) -> None:
        raise Cancelled("the controller is stopping (SIGTERM)")

    reconciler.sleep = cancelled
    result = reconciler.run(BAD)
    assert len(applier.calls) == 1  # no go-back was started
    assert result.rollback == {"to": GOOD, "ok": False, "error": "interrupted: the controller is stopping (SIGTERM)"}
    assert store.rec.quarantined == {}


def test_a_failing_rollback_is_reported_with_both_causes() -> None:
    from controller.errors import Fault
    store, running = _served_good()
    applier = ScriptedApplier((Fault("container demo-vllm-tiny", "exited with status 1"), False),
                              (Fault("container demo-gateway", "not healthy within 5 s"), False))
    result = _reconciler(store, ObservingRuntime(running), applier, SPECS).run(BAD)
    assert result.outcome == "failed" and BAD in store.rec.quarantined
    assert "exited with status 1" in result.message
    assert f"Rolling back to {GOOD[:12]} failed too: container demo-gateway: not healthy" in result.message
    assert store.rec.last_applied == GOOD and store.entries[-1]["rollback"]["ok"] is False


def test_a_commit_whose_passes_keep_being_killed_is_quarantined() -> None:
    store, running = _served_good()
    store.rec = dataclasses.replace(store.rec, inflight=BAD, inflight_attempts=3)
    applier = ScriptedApplier()
    result = _reconciler(store, ObservingRuntime(running), applier, SPECS).run(BAD)
    assert result.outcome == "skipped" and "3 passes on it were interrupted" in result.message
    assert applier.calls == [] and result.served == GOOD  # converged to the last good (a no-op)


def test_a_killed_pass_leaves_its_commit_inflight_for_the_next() -> None:
    store, running = _served_good()

    class Killed(Exception):
        pass

    class Dying:
        def apply(self, *a: Any, **k: Any) -> Any:
            raise Killed

    with pytest.raises(Killed):
        _reconciler(store, ObservingRuntime(running), Dying(), SPECS).run(BAD)
    assert (store.rec.inflight, store.rec.inflight_attempts) == (BAD, 1)


def test_the_pass_after_a_killed_one_verifies_what_it_keeps_and_says_so() -> None:
    store, running = _served_good()
    # killed during a drift repair of the applied commit: what it started matches the spec,
    # so the plan is empty, but it was never gated nor given its restart policy
    store.rec = dataclasses.replace(store.rec, inflight=GOOD, inflight_attempts=1)
    applier = ScriptedApplier()
    result = _reconciler(store, ObservingRuntime(running), applier, SPECS).run(GOOD)
    assert result.outcome == "applied" and applier.kwargs[0]["verify_unchanged"] is True
    assert f"a pass on {GOOD[:12]} had been interrupted before it finished (killed or crashed?)" in result.message
    assert store.rec.inflight is None and store.entries[-1]["message"] == result.message


@pytest.mark.parametrize("damage", [b"", b"garbage\n", b"\xff\xfe\x00", b"0123456789abcdef0"])
def test_a_damaged_owner_id_is_named_not_written_into_labels(tmp_path: Path, damage: bytes,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from controller.adapters.state import StateDir
    from controller.cli import main
    st = StateDir(tmp_path / "state")
    assert len(st.owner_id()) == 16
    st.save(Record(repo="/r"))
    (st.path / "owner").write_bytes(damage)
    with pytest.raises(StateError) as caught:
        st.owner_id()
    assert f"{st.path / 'owner'} is damaged" in str(caught.value) and "remove it" in caught.value.fault.hint
    assert main(["status", "--state-dir", str(st.path)]) == 0  # status still works, and names it
    assert f"state error     state dir {st.path}: {st.path / 'owner'} is damaged" in capsys.readouterr().out
    (st.path / "owner").unlink()
    assert len(st.owner_id()) == 16


def test_status_says_a_running_loop_runs_and_a_suspend_holds_when_their_files_cannot_be_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from controller.adapters.state import StateDir
    from controller.cli import main
    st = StateDir(tmp_path / "state")
    st.save(Record(repo="/r"))
    (st.path / "loop.json").write_bytes(b"\xff{ garbage")
    (st.path / "suspended").write_bytes(b"{ garbage")
    with st.locked("run"):  # as `llm-gitops run` holds it
        assert main(["status", "--state-dir", str(st.path)]) == 0
    out = capsys.readouterr().out
    assert f"controller      running (pid {os.getpid()}, unknown)" in out
    assert "suspended       its file cannot be read  (`llm-gitops resume` ends it)" in out
    assert f"state error     state dir {st.path}: loop.json is unreadable" in out
    assert f"state error     state dir {st.path}: suspended is unreadable" in out and f"remove {st.path}" in out


def test_status_names_a_pass_that_never_finished(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from controller.adapters.state import StateDir
    from controller.cli import main
    st = StateDir(tmp_path / "state")
    st.save(Record(repo="/r", last_attempted=BAD, inflight=BAD, inflight_attempts=1))
    assert main(["status", "--state-dir", str(st.path)]) == 0
    out = capsys.readouterr().out
    assert f"interrupted     {BAD[:12]}: a pass started applying it and did not finish (killed or crashed?)" in out
    with st.locked("apply"):  # the pass running now is not an interrupted one
        assert main(["status", "--state-dir", str(st.path), "--format", "json"]) == 0
        assert json.loads(capsys.readouterr().out)["interrupted"] is None


def test_cleanup_failures_after_success_do_not_fail_the_pass() -> None:
    from controller.errors import EngineError, Fault
    before, after = demo(), demo(**{'"2048"]': '"2048", --seed, "1"]'})

    class StubbornRuntime(FakeRuntime):
        def remove(self, cid: str) -> None:
            raise EngineError(Fault(f"container {cid[:12]}", "removal already in progress"))

    config = FakeConfig()
    config.digest = before.config_digest
    done = _applier(StubbornRuntime(), config).apply(plan(after, observed(before)), after, revision="r", pass_id="p")
    assert done.removed == [] and len(done.set_aside) == 1


# --------------------------------------------------------------------------- read-only commands


def test_status_and_history_do_not_invent_a_state_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from controller.cli import main
    for command in ("status", "history"):
        assert main([command, "--state-dir", str(tmp_path / "typo")]) == 1
        err = capsys.readouterr().err
        assert "no llm-gitops state here" in err and "check --state-dir" in err
    assert not (tmp_path / "typo").exists()
    with pytest.raises(SystemExit) as caught:
        main(["history", "--state-dir", str(tmp_path), "--limit", "0"])
    assert caught.value.code == 1 and "must be 1 or more" in capsys.readouterr().err


def test_keys_only_the_controller_reads_are_never_given_as_reasons() -> None:
    from controller.plan import spec_changes
    old = _loaded()
    new = _loaded(**{'"2048"]\n      startup_timeout_s: 60': '"2048", --seed, "1"]\n      startup_timeout_s: 90'})
    assert new.raw != old.raw
    steps = plan(render(new.spec), actual_from(render(old.spec)), changes=spec_changes(dict(old.raw), dict(new.raw)))
    assert [(s.name, s.reasons) for s in steps.changes] == [
        ("demo-vllm-tiny", ("providers.yaml: vllm-tiny.container.args",))]


def test_the_health_gate_wants_good_answers_in_a_row() -> None:
    from controller.render.containers import Health

    class Flaky(FakeProber):
        def __init__(self, answers: list[bool]) -> None:
            self.answers, self.asked = answers, 0

        def healthy(self, health: Health) -> tuple[bool, str]:
            self.asked += 1
            return self.answers.pop(0), "scripted"

    after = demo()
    spec = after.containers[1]
    prober = Flaky([True, True, False, True, False, True, True, True, True])
    applier = Applier(runtime=FakeRuntime(), prober=prober, config=FakeConfig(), emit=lambda *a, **k: None,
                      gate=Gate(samples=3, interval_s=0), sleep=lambda s: None)
    applier._gate("new-x", spec)
    assert prober.asked == 8  # the first three good answers in a row are the 6th, 7th and 8th


def test_a_container_that_failed_in_this_pass_is_stopped_without_grace_when_going_back() -> None:
    from controller.observed import PASS
    good, bad = demo(), demo(**{'"2048"]': '"2048", --seed, "1"]'})
    running = observed(bad)
    running = [dataclasses.replace(c, labels={PASS: "p1"}) if c.key == "vllm-tiny" else c for c in running]
    runtime, config = FakeRuntime(), FakeConfig()
    config.digest = good.config_digest
    _applier(runtime, config).apply(plan(good, running), good, revision="r", pass_id="p1")
    assert runtime.calls[0] == ("stop", "demo-vllm-tiny") and runtime.stop_timeouts[0] == 2
    runtime = FakeRuntime()
    _applier(runtime, config).apply(plan(good, running), good, revision="r", pass_id="another pass")
    assert runtime.stop_timeouts[0] is None  # anyone else's: the full grace period


def test_a_record_of_the_wrong_shape_is_named_not_a_crash(tmp_path: Path) -> None:
    from controller.adapters.state import StateDir
    st = StateDir(tmp_path)
    for body, field in (('{"quarantined": 5}', "quarantined"), ("[]", "JSON object"), ('{"last_good": 7}', "last_good"),
                        ('{"good_trail": 5}', "good_trail")):
        (tmp_path / "record.json").write_text(body)
        with pytest.raises(StateError) as caught:
            st.record()
        assert field in str(caught.value) and "move" in caught.value.fault.hint
    (tmp_path / "history.jsonl").write_text('[1]\n"x"\n{"pass": 3}\n')
    assert st.history() == [{"pass": 3}]
    (tmp_path / "history.jsonl").write_bytes(b'\xff\xfe not UTF-8\n{"pass": 4}\n{"pass": \xc3\x28}\n')
    assert st.history() == [{"pass": 4}]  # a line that is not even UTF-8 costs that line only


def test_log_tails_lose_every_line_of_a_multi_line_secret() -> None:
    from types import SimpleNamespace
    from controller.adapters.docker import DockerRuntime
    pem = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(f"LINE{i}abcdef0123456789" for i in range(60)) + "\n-----END"
    fake = SimpleNamespace(_secrets={"TLS_KEY"}, environ={"TLS_KEY": pem, "OTHER": "visible"})
    tail = "\n".join(pem.splitlines()[-3:]) + "\nstarting with OTHER=visible"
    shown = DockerRuntime.redact(fake, tail)  # type: ignore[arg-type]
    assert "abcdef0123456789" not in shown and shown.count("<TLS_KEY>") == 3 and "OTHER=visible" in shown


@pytest.mark.parametrize("label", ['{"gpus": 5}', '{"port": [1]}', '{"health": {"x": 1}}', '[]', 'not json',
                                   '{"secret_env": "A"}'])
def test_a_spec_label_edited_into_nonsense_leaves_the_spec_unknown(label: str) -> None:
    from controller.adapters.docker import parse
    seen = parse("c" * 64, "demo-x", "running", {"llm-gitops.spec": label, "llm-gitops.spec-hash": "h"})
    assert seen.spec is None and seen.gpus is None and seen.port is None and seen.spec_hash == "h"


def test_applying_an_older_commit_keeps_the_heads_quarantine() -> None:
    store, running = _served_good()
    store.rec = dataclasses.replace(store.rec, quarantined={BAD: Quarantine("health", "t")})
    older = "c" * 40
    specs = {**SPECS, older: SPECS[GOOD]}
    rec = _reconciler(store, ObservingRuntime(running), ScriptedApplier(), specs)
    rec.is_ancestor = lambda a, b: (a, b) == (older, BAD)  # BAD descends from older, not the reverse
    result = rec.run(older)  # apply --rev <older>
    assert result.ok and BAD in store.rec.quarantined
    rec.is_ancestor = lambda a, b: (a, b) == (BAD, GOOD)  # a fix on top of BAD supersedes it
    store.rec = dataclasses.replace(store.rec, last_applied=older)
    assert rec.run(GOOD).ok and store.rec.quarantined == {}


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from controller import cli

    def interrupted(args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_validate", interrupted)
    assert cli.main(["validate", str(ROOT / "config" / "demo")]) == 130
    err = capsys.readouterr().err
    assert err.startswith("llm-gitops: interrupted;") and "Traceback" not in err


def test_a_container_killed_and_removed_by_hand_mid_gate_is_interference_not_a_bad_commit() -> None:
    from controller.apply import Interfered

    class RemovedByHand(FakeRuntime):
        looks = 0

        def state(self, cid: str) -> ContainerState:
            self.looks += 1  # `docker rm -f`: first it is killed (137), then it is gone
            status = "exited" if self.looks == 1 else "missing"
            return ContainerState(id=cid, name="", status=status, running=False, exit_code=137)

    applier = Applier(runtime=RemovedByHand(), prober=FakeProber(), config=FakeConfig(), emit=lambda *a, **k: None,
                      gate=Gate(samples=1, interval_s=0), sleep=lambda s: None)
    with pytest.raises(Interfered) as caught:
        applier._gate("new-x", demo().containers[1])
    assert "removed outside llm-gitops" in caught.value.fault.message


def test_a_container_already_gone_when_it_is_set_aside_is_simply_done() -> None:
    from controller.errors import EngineNotFound, Fault
    before, after = demo(), demo(**{"  llamacpp-tiny:\n    type: llama_cpp\n    status: active": "  llamacpp-tiny:\n    type: llama_cpp\n    status: disabled"})

    class Gone(FakeRuntime):
        def stop(self, cid: str, *, timeout_s: int | None = None) -> None:
            if "llamacpp" in cid:
                raise EngineNotFound(Fault(f"container {cid[:12]}", "not found"))
            super().stop(cid, timeout_s=timeout_s)

    config = FakeConfig()
    from controller.render.litellm import public_names
    prober = FakeProber(public_names(after.litellm_config))  # phi-mini is gone with its provider
    done = _applier(Gone(), config, prober).apply(plan(after, observed(before)), after, revision="r", pass_id="p")
    assert not [cid for cid in done.set_aside if "llamacpp" in cid]


def test_a_commit_git_lost_is_served_from_the_state_dirs_snapshot() -> None:
    from controller.errors import RevisionNotFound
    store, running = _served_good()
    store.snapshots = {GOOD: render(SPECS[GOOD].spec)}

    def load(commit: str) -> Any:
        if commit == GOOD:
            raise RevisionNotFound("revision not found")
        return SPECS[commit]

    rec = _reconciler(store, ObservingRuntime(running), ScriptedApplier(), SPECS)
    rec.load = load
    store.rec = dataclasses.replace(store.rec, quarantined={BAD: Quarantine("health", "t")})
    result = rec.run(BAD)  # quarantined head: serve the last good commit, which git no longer has
    assert result.outcome == "skipped" and result.served == GOOD and "serving the last good commit" in result.message


def test_fingerprints_folded_in_afterwards_give_what_rendering_with_them_gives() -> None:
    from controller.render import with_fingerprints
    for name in ("example", "demo"):
        spec = load_files(read_spec_dir(ROOT / "config" / name)).spec
        assert spec is not None
        fps = {n: f"fp-{n}" for c in render(spec).containers for n in c.secret_env}
        assert fps and with_fingerprints(render(spec), fps) == render(spec, secret_fingerprints=fps)


# --------------------------------------------------------------------------- the gateway canary


class ByUrl(FakeProber):
    """Healthy everywhere; the canary (port 45678) and the live gateway list what they are given."""

    def __init__(self, canary: list[str] | None, live: list[str] | None, healthy: bool = True) -> None:
        super().__init__()
        self.lists, self.ok = {"canary": canary, "live": live}, healthy

    def healthy(self, health: Any) -> tuple[bool, str]:
        if ":45678/" in health.url:
            return self.ok, "HTTP 200" if self.ok else "connection refused"
        return True, "HTTP 200"

    def served_models(self, base_url: str, key_env: str | None) -> tuple[list[str] | None, str]:
        self.asked.append((base_url, key_env))
        names = self.lists["canary" if base_url.endswith(":45678") else "live"]
        return (list(names), "HTTP 200") if names is not None else (None, "HTTP 401 (the master key was refused)")


def _mapping_change() -> tuple[Desired, Desired]:
    """Only the gateway changes: qwen-tiny gets another fallback chain."""
    before = demo()
    files = read_spec_dir(ROOT / "config" / "demo")
    files["model-mappings.yaml"] = files["model-mappings.yaml"].replace("[tinyllama:1.1b, phi-mini]", "[phi-mini]")
    loaded = load_files(files)
    assert loaded.spec is not None and not loaded.errors
    return before, render(loaded.spec)


def test_a_canary_that_lists_other_names_fails_the_commit_before_anything_stops() -> None:
    before, after = _mapping_change()
    runtime, config = FakeRuntime(), FakeConfig()
    config.digest = before.config_digest
    prober = ByUrl(canary=["chat", "qwen-tiny", "tinyllama:1.1b"], live=DEMO_NAMES)
    with pytest.raises(ApplyFailed) as caught:
        _applier(runtime, config, prober).apply(plan(after, observed(before)), after, revision="c" * 40, pass_id="p1")
    fault = caught.value.fault
    assert fault.subject == f"commit {'c' * 12}" and not caught.value.host_fault
    assert "the canary demo-gateway_canary_p1 does not serve phi-mini" in fault.message
    assert "wildcard" in fault.hint
    assert runtime.calls == [("create", "demo-gateway_canary_p1"), ("start", "demo-gateway_canary_p1"),
                             ("remove", "demo-gateway_canary_p1")]  # nothing else: the live gateway untouched
    assert config.events == ["stage", "check", "discard"]  # never swapped, and no staged file is left behind
    assert prober.asked == [("http://127.0.0.1:45678", "LITELLM_MASTER_KEY")]


def test_a_canary_that_never_gets_healthy_is_removed_and_names_the_commit() -> None:
    before, after = _mapping_change()
    runtime, config = FakeRuntime(crash={"demo-gateway_canary_p1"}), FakeConfig()
    config.digest = before.config_digest
    with pytest.raises(ApplyFailed) as caught:
        _applier(runtime, config).apply(plan(after, observed(before)), after, revision="c" * 40, pass_id="p1")
    assert caught.value.fault.subject == f"commit {'c' * 12}"
    assert "failed on the canary demo-gateway_canary_p1: exited with status 1" in caught.value.fault.message
    assert ("remove", "demo-gateway_canary_p1") in runtime.calls and not caught.value.host_fault
    assert not [c for c in runtime.calls if c[0] == "stop"]


def test_a_pass_cancelled_while_its_canary_boots_removes_the_canary() -> None:
    before, after = _mapping_change()
    runtime, config = FakeRuntime(), FakeConfig()
    config.digest = before.config_digest

    def sleep(seconds: float) -> None:
        raise Cancelled("a newer commit arrived")  # or SIGTERM

    applier = Applier(runtime=runtime, prober=ByUrl(DEMO_NAMES, DEMO_NAMES, healthy=False), config=config,
                      emit=lambda *a, **k: None, gate=Gate(samples=1, interval_s=0.5), sleep=sleep)
    with pytest.raises(Cancelled):
        applier.apply(plan(after, observed(before)), after, revision="r", pass_id="p1")
    assert runtime.calls[-1] == ("remove", "demo-gateway_canary_p1")
    assert not [c for c in runtime.calls if c[0] in ("stop", "rename")]
    assert config.events == ["stage", "check", "discard"]


def test_a_live_gateway_that_lists_other_names_after_the_swap_fails_the_pass() -> None:
    before, after = _mapping_change()
    runtime, config = FakeRuntime(), FakeConfig()
    config.digest = before.config_digest
    prober = ByUrl(canary=DEMO_NAMES, live=["qwen-tiny"])
    with pytest.raises(ApplyFailed) as caught:
        _applier(runtime, config, prober).apply(plan(after, observed(before)), after, revision="c" * 40, pass_id="p1")
    assert "the gateway demo-gateway does not serve chat, phi-mini, tinyllama:1.1b" in caught.value.fault.message
    assert caught.value.container_id == "new-demo-gateway" and not caught.value.host_fault
    assert config.events == ["stage", "check", "swap"]  # failed after the swap: reconcile goes back
    prober = ByUrl(canary=DEMO_NAMES, live=None)  # no list at all (401): asked again, then failed
    with pytest.raises(ApplyFailed) as caught:
        _applier(FakeRuntime(), FakeConfig(), prober).apply(plan(after, observed(before)), after, revision="c" * 40,
                                                            pass_id="p1")
    assert "with HTTP 401 (the master key was refused), not a list of models" in caught.value.fault.message


def test_no_canary_when_switched_off_or_going_back_and_none_without_a_config_change() -> None:
    before, after = _mapping_change()
    for kwargs, call in (({"canary": False}, {}), ({}, {"canary": False})):
        runtime, config = FakeRuntime(), FakeConfig()
        config.digest = before.config_digest
        _applier(runtime, config, **kwargs).apply(plan(after, observed(before)), after, revision="r", pass_id="p",
                                                  **call)
        assert not [c for c in runtime.calls if "canary" in c[1]] and "swap" in config.events
    runtime, config = FakeRuntime(), FakeConfig()
    provider_only = demo(**{'"2048"]': '"2048", --seed, "1"]'})
    config.digest = provider_only.config_digest
    _applier(runtime, config).apply(plan(provider_only, observed(before)), provider_only, revision="r", pass_id="p")
    assert not [c for c in runtime.calls if "canary" in c[1]] and config.events == []


def test_a_rollback_pass_runs_no_canary() -> None:
    from controller.errors import Fault
    store, running = _served_good()
    applier = ScriptedApplier((Fault("commit b", "the canary does not serve x"), False), None)
    result = _reconciler(store, ObservingRuntime(running), applier, SPECS).run(BAD)
    assert result.outcome == "failed" and BAD in store.rec.quarantined and result.rollback["ok"]
    assert [k.get("canary", True) for k in applier.kwargs] == [True, False]


def test_a_leaked_canary_is_planned_for_removal_and_removed_without_a_rename() -> None:
    from controller.adapters.docker import labels_for, parse
    from controller.render.containers import canary_container
    desired = demo()
    gateway = desired.container("gateway")
    assert gateway is not None
    spec = canary_container(gateway, stack="demo", port=45678, pass_id="deadbeef0000")
    labels = labels_for(spec, stack="demo", revision="r", pass_id="deadbeef0000", owner="o1", state_dir="/s")
    assert (labels["llm-gitops.component"], labels["llm-gitops.owner"], labels["llm-gitops.state-dir"]) == (
        "canary", "o1", "/s")
    leaked = parse("k" * 64, spec.name, "running", labels)
    assert leaked.key == "canary" and not leaked.aside
    steps = plan(desired, [*observed(desired), leaked]).changes
    assert [(s.action, s.name, s.reasons) for s in steps] == [
        (Action.REMOVE, "demo-gateway_canary_deadbeef0000", ("a gateway canary left by an interrupted pass",))]
    runtime, config = FakeRuntime(), FakeConfig()
    config.digest = desired.config_digest
    _applier(runtime, config).apply(plan(desired, [*observed(desired), leaked]), desired, revision="r", pass_id="p")
    assert runtime.calls == [("remove", "k" * 64)]


def test_the_canary_runs_the_gateway_on_the_staged_file_on_another_port() -> None:
    from controller.render.containers import base_url, canary_container
    gateway = demo().container("gateway")
    assert gateway is not None
    spec = canary_container(gateway, stack="demo", port=45678, pass_id="p" * 20)
    assert spec.command == ("--config", "/etc/llm-gitops/config.yaml", "--host", "127.0.0.1", "--port", "45678")
    assert [(m.kind, m.target) for m in spec.mounts] == [("gateway-staging", "/etc/llm-gitops")]
    assert (spec.image, spec.env, spec.secret_env) == (gateway.image, gateway.env, gateway.secret_env)
    assert spec.health.url == "http://127.0.0.1:45678/health/liveliness" and spec.startup_timeout_s == gateway.startup_timeout_s
    assert spec.name == "demo-gateway_canary_pppppppppppp" and spec.component == "canary"
    assert base_url(gateway) == "http://127.0.0.1:14000"


def test_public_names_from_the_config_are_the_names_the_catalog_serves() -> None:
    from controller.render.litellm import master_key_env, public_names
    for name in ("example", "demo"):
        spec = load_files(read_spec_dir(ROOT / "config" / name)).spec
        assert spec is not None
        desired = render(spec)
        assert public_names(desired.litellm_config) == desired.public_models and desired.aliases
        assert master_key_env(desired.litellm_config) == "LITELLM_MASTER_KEY"
        # a state dir's snapshot keeps no catalog; the names come from its config all the same
        again = Desired.from_snapshot(json.loads(json.dumps(desired.snapshot())))
        assert public_names(again.litellm_config) == desired.public_models


def test_on_a_first_pass_a_new_cache_starts_before_the_canary() -> None:
    """The canary finds its Redis (LiteLLM boots three times slower without it); a cache
    that would replace a running one waits for the canary like everything else."""
    desired = demo()
    runtime, config = FakeRuntime(), FakeConfig()
    _applier(runtime, config, ByUrl(DEMO_NAMES, DEMO_NAMES)).apply(plan(desired, []), desired, revision="r",
                                                                    pass_id="p1")
    order = [c for c in runtime.calls if c[0] == "create"]
    assert order[:2] == [("create", "demo-cache"), ("create", "demo-gateway_canary_p1")]
    assert order.count(("create", "demo-cache")) == 1
    running = [dataclasses.replace(c, spec_hash="x" * 64) if c.component == "cache" else c for c in observed(desired)]
    runtime = FakeRuntime()
    config.digest = "old"   # the config changes too, so there is a canary
    _applier(runtime, config, ByUrl(DEMO_NAMES, DEMO_NAMES)).apply(plan(desired, running), desired,
                                                                    revision="r", pass_id="p2")
    assert runtime.calls[0] == ("create", "demo-gateway_canary_p2")  # the running cache is not touched first
