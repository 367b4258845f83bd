"""The loop's logic in isolation: settings precedence and errors, backoff, the flap guard,
cancellation of a pass's waits, the metrics format, and the webhook signature.

The same behaviours run end to end in tests/engine/test_loop.py (a real `llm-gitops run`
process, real git, the real engine); these pin each rule down, fast.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import threading
import time
from typing import Any

import pytest

from controller.errors import Cancelled
from controller.loop import FlapGuard, Loop, LoopSettings, Pacer, Stats, backoff_delay
from controller.render import render
from controller.settings import SettingsError, resolve
from test_runtime_core import GOOD, SPECS, MemoryStore, ObservingRuntime, _reconciler, _served_good

BAD = "b" * 40

# --------------------------------------------------------------------------- settings


def test_flags_override_the_environment_which_overrides_the_file() -> None:
    text = "repo: /srv/specs\npoll_interval_s: 10\ndrift_interval_s: 20\nbranch: prod\n"
    r = resolve(text, "llm-gitops.yaml", {"LLM_GITOPS_POLL_INTERVAL_S": "15", "LLM_GITOPS_DRIFT_INTERVAL_S": "25"},
                {"drift_interval_s": "30", "state_dir": None})
    s = r.settings
    assert (s.repo, s.branch, s.poll_interval_s, s.drift_interval_s) == ("/srv/specs", "prod", 15.0, 30.0)
    assert r.origins["repo"] == "llm-gitops.yaml:1" and r.origins["branch"] == "llm-gitops.yaml:4"
    assert r.origins["poll_interval_s"] == "environment LLM_GITOPS_POLL_INTERVAL_S"
    assert r.origins["drift_interval_s"] == "--drift-interval-s" and r.origins["state_dir"] == "default"


def test_a_bad_setting_names_where_it_came_from() -> None:
    with pytest.raises(SettingsError) as caught:
        resolve("repo: x\npoll_intervall_s: 5\n", "/etc/llm-gitops.yaml", {}, {})
    assert "/etc/llm-gitops.yaml:2: unknown setting `poll_intervall_s`; did you mean `poll_interval_s`?" \
        in str(caught.value)
    with pytest.raises(SettingsError) as caught:
        resolve(None, "f", {"LLM_GITOPS_DRIFT_INTERVAL_S": "soon"}, {})
    assert str(caught.value).startswith("environment LLM_GITOPS_DRIFT_INTERVAL_S: drift_interval_s:")
    with pytest.raises(SettingsError) as caught:
        resolve("flap_limit: 0\n", "f.yaml", {}, {})
    assert str(caught.value).startswith("f.yaml:1: flap_limit: Input should be greater than or equal to 1")
    with pytest.raises(SettingsError, match="require_signed needs allowed_signers"):
        resolve(None, "f", {}, {"require_signed": True})
    with pytest.raises(SettingsError, match="f.yaml:2: .*fix the YAML syntax"):
        resolve("repo: [unclosed\n", "f.yaml", {}, {})


def test_the_http_port_can_be_any_free_one_or_off() -> None:
    assert resolve(None, "f", {"LLM_GITOPS_HTTP_PORT": "off"}, {}).settings.http_port == "off"
    assert resolve(None, "f", {}, {"http_port": "0"}).settings.http_port == 0
    with pytest.raises(SettingsError, match="not a port"):
        resolve("http_port: 70000\n", "f.yaml", {}, {})


# --------------------------------------------------------------------------- brakes


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_delay(n, 5, 60) for n in range(6)] == [0, 5, 10, 20, 40, 60]
    assert backoff_delay(500, 5, 300) == 300  # no overflow after a long outage


def test_the_flap_guard_counts_restarts_within_its_window_only() -> None:
    g = FlapGuard(limit=3, window_s=100)
    g.engine_counts({"a": ("id1", 0)}, at=0)           # first sight: a baseline, not restarts
    assert g.engine_counts({"a": ("id1", 2)}, at=10) == {"a": 2}
    g.restarted("a", 20)                                # a drift repair
    assert g.over(30) == {}                             # 3 is not more than 3
    g.engine_counts({"a": ("id1", 3)}, at=40)
    assert g.over(50) == {"a": 4}
    assert g.over(125) == {}                            # the first two fell out of the window
    assert g.engine_counts({"a": ("id2", 1)}, at=130) == {"a": 1}  # a new container counts from zero


def test_a_cancelled_pacer_interrupts_the_wait_at_once() -> None:
    p = Pacer()
    threading.Timer(0.1, p.cancel, args=("a newer commit abc arrived",)).start()
    t0 = time.monotonic()
    with pytest.raises(Cancelled, match="newer commit abc"):
        p.sleep(30)
    assert time.monotonic() - t0 < 5
    p.reset()
    p.sleep(0.01)  # a fresh pass sleeps normally


# --------------------------------------------------------------------------- reconcile, cancelled and brakes


class CancelledApplier:
    def apply(self, *a: Any, **k: Any) -> Any:
        raise Cancelled("a newer commit c0ffee arrived")


def test_an_interrupted_wait_is_not_held_against_the_commit() -> None:
    store, running = _served_good()
    result = _reconciler(store, ObservingRuntime(running), CancelledApplier(), SPECS).run(BAD)
    assert result.outcome == "interrupted" and "newer commit c0ffee" in result.message
    assert store.rec.quarantined == {} and store.rec.inflight is None and store.rec.last_applied == GOOD
    assert store.entries[-1]["outcome"] == "interrupted"


def test_a_commit_whose_signature_is_refused_is_quarantined_and_the_good_one_served() -> None:
    store, running = _served_good()
    rec = _reconciler(store, ObservingRuntime(running), CancelledApplier(), SPECS)
    rec.verify = lambda c: "commit bbbbbbbbbbbb is not signed" if c == BAD else None
    result = rec.run(BAD)
    assert result.outcome == "skipped" and result.served == GOOD
    assert store.rec.quarantined[BAD].reason.startswith("signature not accepted: commit bbbbbbbbbbbb is not signed")
    checked: list[str] = []
    rec.verify = lambda c: checked.append(c)  # type: ignore[func-returns-value]
    rec.run(GOOD)
    assert checked == []  # the good commit was proven already


def test_containers_left_alone_are_not_touched_by_a_drift_pass() -> None:
    store, running = _served_good()
    stopped = [dataclasses.replace(c, running=False) if c.key == "vllm-tiny" else c for c in running]
    from test_runtime_core import ScriptedApplier
    applier = ScriptedApplier()
    result = _reconciler(store, ObservingRuntime(stopped), applier, SPECS).run(
        GOOD, leave_alone=frozenset({"demo-vllm-tiny"}))
    assert result.outcome == "no-op" and result.left_alone == ["demo-vllm-tiny"] and applier.calls == []
    assert "leaving demo-vllm-tiny alone" in result.message


# --------------------------------------------------------------------------- the loop on fakes


class FakeSource:
    def __init__(self, head: str) -> None:
        self.head = head

    def peek(self) -> str:
        return self.head

    def current(self, *, fetch: bool) -> str:
        return self.head


class FakeControl:
    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def suspended(self) -> None:
        return None

    def next_request(self) -> None:
        return None

    def answer_request(self, rid: str, answer: Any) -> None:
        pass

    def save_loop_state(self, state: Any) -> None:
        self.state = dict(state)

    def loop_state(self) -> None:
        return None


class WaitingReconciler:
    """run() waits on the pacer like a health gate, for `BAD`; other commits pass at once."""

    def __init__(self, pacer: Pacer) -> None:
        self.pacer, self.runs = pacer, []
        self.store = MemoryStore()

    def run(self, head: str, **kw: Any) -> Any:
        from controller.reconcile import PassResult
        self.runs.append((head, kw.get("trigger")))
        try:
            if head == BAD:
                for _ in range(300):
                    self.pacer.sleep(0.1)
        except Cancelled as exc:
            return PassResult("p", head, "interrupted", exc.reason)
        return PassResult("p", head, "applied", "applied")


def test_a_newer_head_cancels_the_wait_and_the_loop_moves_to_it() -> None:
    pacer = Pacer()
    rec = WaitingReconciler(pacer)
    source = FakeSource(BAD)
    loop = Loop(reconciler=rec, source=source, control=FakeControl(), settings=LoopSettings(tick_s=0.05),  # type: ignore[arg-type]
                emit=lambda *a, **k: None, pacer=pacer, restart_counts=lambda: {}, halt=lambda cid: None)
    t = threading.Thread(target=loop.run)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while not rec.runs and time.monotonic() < deadline:
            time.sleep(0.02)
        source.head = GOOD
        loop.saw_head(GOOD, "test")
        while len(rec.runs) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        loop.stop("test over")
        t.join(10)
    assert rec.runs[:2] == [(BAD, "start"), (GOOD, "commit")]
    assert loop.stats.passes == {"interrupted": 1, "applied": 1}
    assert not t.is_alive()


# --------------------------------------------------------------------------- metrics and the webhook


def test_metrics_are_valid_prometheus_text() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from controller import metrics
    from controller.reconcile import PassResult
    stats = Stats()
    stats.count_pass(PassResult("p", GOOD, "applied", "x", duration_s=3.2), 1.7e9)
    stats.count_pass(PassResult("p", GOOD, "failed", "x", duration_s=700), 1.7e9)
    stats.restarts['we"ird\\name'] = 2
    text = metrics.render(stats, quarantined=1, suspended=False, flapping=["demo-a"], failures=1, up_since=1.6e9)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert "llm_gitops_pass_duration_seconds" in families and families["llm_gitops_pass_duration_seconds"].type == "histogram"
    assert samples[("llm_gitops_passes_total", (("outcome", "applied"),))] == 1
    assert samples[("llm_gitops_pass_duration_seconds_bucket", (("le", "5"),))] == 1
    assert samples[("llm_gitops_pass_duration_seconds_bucket", (("le", "+Inf"),))] == 2
    assert samples[("llm_gitops_pass_duration_seconds_sum", ())] == pytest.approx(703.2)
    assert samples[("llm_gitops_container_restarts_total", (("container", 'we"ird\\name'),))] == 2
    assert samples[("llm_gitops_flapping", (("container", "demo-a"),))] == 1


def test_the_webhook_signature_is_githubs_hmac_sha256() -> None:
    from controller.adapters.http import signature_ok
    body = b'{"ref": "refs/heads/main"}'
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signature_ok(b"s3cret", body, good)
    assert not signature_ok(b"s3cret", body + b" ", good)      # another body
    assert not signature_ok(b"other", body, good)               # another secret
    assert not signature_ok(b"s3cret", body, None)
    assert not signature_ok(b"s3cret", body, good.replace("sha256=", "sha1="))


def test_a_drift_check_that_finds_nothing_writes_no_log_line() -> None:
    import io
    import json

    from controller.adapters.log import emitter
    out = io.StringIO()
    emit = emitter(out, json=True, quiet_noops=True)
    emit("pass_start", commit="aaa", pass_id="p1", trigger="drift")
    emit("pass_end", commit="aaa", outcome="no-op", trigger="drift")
    assert out.getvalue() == ""
    emit("pass_start", commit="aaa", pass_id="p2", trigger="drift")   # this one repairs something
    emit("starting", container="demo-a")
    emit("pass_end", commit="aaa", outcome="applied", trigger="drift")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in lines] == ["pass_start", "starting", "pass_end"]
    assert all(e["pass_id"] == "p2" and e["commit"] == "aaa" for e in lines)
    emit("pass_start", commit="bbb", pass_id="p3", trigger="commit")  # a commit's pass always shows
    emit("pass_end", commit="bbb", outcome="no-op", trigger="commit")
    assert out.getvalue().count("pass_start") == 2


# --------------------------------------------------------------------------- control files (review findings)


def _loop(tmp_path: Any, rec: Any, source: Any, **kw: Any) -> Any:
    from controller.adapters.state import ControlFiles
    control = ControlFiles(tmp_path)
    return Loop(reconciler=rec, source=source, control=control, settings=LoopSettings(tick_s=0.1, **kw),  # type: ignore[arg-type]
                emit=lambda *a, **k: None, pacer=rec.pacer, restart_counts=lambda: {}, halt=lambda cid: None), control


def _run_for(loop: Any, seconds: float) -> None:
    t = threading.Thread(target=loop.run)
    t.start()
    time.sleep(seconds)
    loop.stop("test over")
    t.join(10)
    assert not t.is_alive()


def test_while_suspended_a_new_commit_waits_without_spinning(tmp_path: Any) -> None:
    rec = WaitingReconciler(Pacer())
    loop, control = _loop(tmp_path, rec, FakeSource(GOOD))
    control.suspend("maintenance")
    reads = []
    real = control.suspended
    control.suspended = lambda: reads.append(1) or real()  # type: ignore[method-assign]
    t = threading.Thread(target=loop.run)
    t.start()
    loop.saw_head(BAD, "test")
    time.sleep(1.0)
    loop.stop("test over")
    t.join(10)
    assert rec.runs == [] and len(reads) < 30   # about one look per 0.1 s tick, not a spin


def test_an_unreadable_suspend_file_holds_changes(tmp_path: Any) -> None:
    rec = WaitingReconciler(Pacer())
    loop, control = _loop(tmp_path, rec, FakeSource(GOOD))
    (tmp_path / "suspended").write_text("{not json")
    _run_for(loop, 0.5)
    assert rec.runs == [] and "unreadable" in loop.snapshot()["suspended"]["reason"]


def test_requests_are_answered_one_by_one_and_bad_ones_get_a_reason(tmp_path: Any) -> None:
    rec = WaitingReconciler(Pacer())
    loop, control = _loop(tmp_path, rec, FakeSource(GOOD))
    (tmp_path / "requests").mkdir()
    (tmp_path / "requests" / "1-a.json").write_text('{"action": "rollback", "to": 123}')
    (tmp_path / "requests" / "2-b.json").write_text('["not", "an", "object"]')
    good = control.put_request("retry")
    _run_for(loop, 1.0)
    assert "not a request llm-gitops makes" in control.answer("1-a")["message"]
    assert "not a request llm-gitops makes" in control.answer("2-b")["message"]
    assert control.answer(good)["ok"] is True and ("a" * 40, "retry") in rec.runs
    assert not control.pending(good) and control.next_request() is None


def test_a_request_stays_queued_until_it_is_answered(tmp_path: Any) -> None:
    from controller.adapters.state import ControlFiles
    control = ControlFiles(tmp_path)
    rid = control.put_request("retry")
    assert control.next_request()["id"] == rid and control.next_request()["id"] == rid  # read, not taken
    control.answer_request(rid, {"ok": True})
    assert control.next_request() is None and control.answer(rid) == {"ok": True}


def test_an_empty_secret_blocks_the_pass_like_a_missing_one() -> None:
    store = MemoryStore()   # a first pass: the gateway, which needs the key, is to be created
    rec = _reconciler(store, ObservingRuntime([]), CancelledApplier(), SPECS)
    rec.environ = {"LITELLM_MASTER_KEY": ""}   # the shipped env file, not filled in yet
    result = rec.run(GOOD)
    assert result.outcome == "blocked" and "needs LITELLM_MASTER_KEY" in result.message
    assert "(or has empty)" in result.message and store.rec.quarantined == {}


def test_a_config_already_proven_gets_no_canary() -> None:
    """Drift repair of a hand-edited live config puts back the applied config: no canary."""
    from controller.apply import Done
    store, running = _served_good()
    calls: list[bool] = []

    class Spy:
        def apply(self, *a: Any, canary: bool = True, **k: Any) -> Any:
            calls.append(canary)
            return Done()

    good = render(SPECS[GOOD].spec)
    store.rec = dataclasses.replace(store.rec, applied_config_digest=good.config_digest)
    rec = _reconciler(store, ObservingRuntime(running), Spy(), SPECS)
    rec.config.digest = "edited by hand"
    assert rec.run(GOOD).outcome == "applied" and calls == [False]
    from test_runtime_core import _loaded
    new_config = "c" * 40
    rec.load = {**SPECS, new_config: _loaded(**{"context_length: 2048\n        size: 1.1B": "context_length: 4096\n        size: 1.1B"})}.__getitem__
    assert rec.run(new_config).outcome == "applied"   # a config never proven
    assert calls[-1] is True
