"""`llm-gitops run` against real git repositories and the real engine (issue 4's tests).

Each test starts the controller as its own process on a Lab stack (stub providers and a
stub gateway on free 127.0.0.1 ports) with short intervals, drives it only the way an
operator would (commits, `docker stop`, HTTP, signals, the CLI) and reads back what it did
from its JSON log, its endpoint, the state dir and the engine. Waits are bounded (tens of
seconds); real latencies are measured by `make bench`, not asserted here. What the loop does
when git fails (an unreachable remote, a force-push, a deleted branch) or a second controller
starts is in tests/faults/.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from engine.lab import Lab, wait_for
from engine.loop_lab import Controller

pytestmark = pytest.mark.docker


def _spec_hash(lab: Lab, key: str) -> str | None:
    return lab.running().get(lab.cname(key))


def test_a_commit_to_a_watched_repo_converges_without_any_other_trigger(lab: Lab) -> None:
    first = lab.commit("first")
    with Controller(lab) as ctl:  # poll and drift every 600 s: only the ref watcher can start a pass
        assert ctl.wait_pass(1, outcome="applied")["commit"] == first[:12]
        before = _spec_hash(lab, "alpha")
        lab.providers["alpha"]["container"]["args"] = ["--seed", "7"]
        second = lab.commit("alpha: new args")
        done = ctl.wait_pass(1, timeout=60, commit=second[:12])
        assert done["outcome"] == "applied"
        assert _spec_hash(lab, "alpha") not in (None, before)
        starts = ctl.events("pass_start", commit=second[:12])
        assert starts and starts[0]["trigger"] == "commit"
        # every line of that pass names its commit
        inside = [e for e in ctl.lines() if e.get("pass_id") == starts[0]["pass_id"]]
        assert len(inside) >= 3 and all(e.get("commit") == second[:12] for e in inside)
        assert ctl.terminate() == 0


def test_a_stopped_container_and_an_edited_gateway_config_are_put_back_by_the_drift_check(lab: Lab) -> None:
    lab.commit()
    # a flap limit of 1: repairs of hand changes are not crashes, and must not trip it
    with Controller(lab, "--drift-interval-s", "1", "--flap-limit", "1") as ctl:
        ctl.wait_pass(1, outcome="applied")
        alpha = lab.ids()[lab.cname("alpha")]
        lab.engine.api.stop(alpha, timeout=1)
        wait_for(lambda: lab.engine.api.inspect_container(alpha)["State"]["Running"], timeout=30)
        repaired = ctl.wait_event("drift_repaired")
        assert lab.cname("alpha") in repaired["containers"]
        live = lab.state / "gateway" / "config.yaml"
        gateway = lab.ids()[lab.cname("gateway")]
        good = live.read_bytes()
        live.write_text(good.decode() + "\n# edited by hand\n")
        wait_for(lambda: live.read_bytes() == good, timeout=30)
        assert list((lab.state / "gateway").glob("config.yaml.edited-*")) or \
            list(lab.state.glob("gateway-config.edited-*"))  # the edit is kept, not lost
        wait_for(lambda: len(ctl.events("drift_repaired")) >= 2, timeout=30)
        assert lab.engine.api.inspect_container(gateway)["State"]["Running"]
        metrics = ctl.request("/metrics")[1]
        assert _sample(metrics, "llm_gitops_drift_repairs_total") >= 2
        lab.engine.api.stop(alpha, timeout=1)  # a third hand change, still no "flapping"
        wait_for(lambda: len(ctl.events("drift_repaired")) >= 3, timeout=30)
        assert not ctl.events("flapping") and ctl.status()["controller"]["flapping"] == {}
        assert ctl.terminate() == 0


def _sample(metrics: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families
    for family in text_string_to_metric_families(metrics):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {name}{labels} in:\n{metrics}")


def test_status_and_metrics_say_what_the_controller_does(lab: Lab) -> None:
    commit = lab.commit()
    with Controller(lab) as ctl:
        ctl.wait_pass(1, outcome="applied")
        code, health = ctl.request("/healthz")
        assert code == 200 and json.loads(health)["ok"] is True
        status = ctl.status()
        assert status["last_applied"] == commit and status["drift"] == []
        assert {c["name"] for c in status["containers"]} == {lab.cname(k) for k in ("alpha", "beta", "gateway")}
        assert status["controller"]["state"] in ("idle", "applying") and status["controller"]["serving_head"] == commit
        metrics = ctl.request("/metrics")[1]
        assert _sample(metrics, "llm_gitops_passes_total", outcome="applied") == 1
        assert _sample(metrics, "llm_gitops_pass_duration_seconds_count") == 1
        assert _sample(metrics, "llm_gitops_last_applied_timestamp_seconds") > time.time() - 120
        assert _sample(metrics, "llm_gitops_quarantined_commits") == 0
        # the CLI's status shows the controller too
        code, out, _ = lab.cli("status", "--state-dir", str(lab.state))
        assert code == 0 and f"running (pid {ctl.proc.pid}" in out, out
        assert ctl.terminate() == 0
    code, out, _ = lab.cli("status", "--state-dir", str(lab.state))
    assert "controller      not running" in out


def test_sigterm_during_a_health_wait_exits_cleanly_and_the_next_start_converges(lab: Lab) -> None:
    lab.commit()
    with Controller(lab) as ctl:
        ctl.wait_pass(1, outcome="applied")
        lab.providers["gamma"] = _slow(lab, "gamma", delay=12)
        slow = lab.commit("gamma: a slow cold start")
        ctl.wait_event("starting", container=lab.cname("gamma"))
        t0 = time.monotonic()
        assert ctl.terminate(timeout=30) == 0
        assert time.monotonic() - t0 < 15  # it did not sit out the 12 s cold start
    text = ctl.log_path.read_text()
    assert '"event": "pass_interrupted"' in text and '"event": "lock_released"' in text
    assert lab.history()[-1]["outcome"] == "interrupted"
    from controller.adapters.state import lock_holder
    assert lock_holder(lab.state) is None
    with Controller(lab) as again:
        done = again.wait_pass(1, timeout=60)
        assert done["commit"] == slow[:12] and done["outcome"] == "applied"
        assert lab.cname("gamma") in lab.running()
        assert again.terminate() == 0
    rec = json.loads((lab.state / "record.json").read_text())
    assert rec["last_good"] == slow and rec["quarantined"] == {}  # an orderly stop is not the commit's fault


def _slow(lab: Lab, key: str, *, delay: int, timeout: int = 90) -> dict[str, Any]:
    from engine.lab import free_port, stub_provider
    lab.ports[key] = free_port()
    return stub_provider(lab.ports[key], f"m-{key}", env={"STUB_START_DELAY": str(delay)}, timeout=timeout)


def test_a_newer_commit_during_a_health_wait_wins(lab: Lab) -> None:
    lab.commit()
    with Controller(lab) as ctl:
        ctl.wait_pass(1, outcome="applied")
        lab.providers["gamma"] = _slow(lab, "gamma", delay=120, timeout=180)
        stuck = lab.commit("gamma: would wait two minutes")
        ctl.wait_event("starting", container=lab.cname("gamma"))
        t0 = time.monotonic()
        lab.providers["gamma"]["container"]["env"] = {}  # the fix: starts at once
        fixed = lab.commit("gamma: no delay")
        done = ctl.wait_pass(1, timeout=60, commit=fixed[:12])
        assert done["outcome"] == "applied" and time.monotonic() - t0 < 60
        interrupted = ctl.passes(commit=stuck[:12])
        assert interrupted and interrupted[0]["outcome"] == "interrupted"
        assert lab.containers()[lab.cname("gamma")]["Config"]["Env"].count("STUB_START_DELAY=120") == 0
        assert ctl.terminate() == 0


def test_an_invalid_commit_after_an_interrupted_pass_goes_back_to_the_last_good_commit(lab: Lab) -> None:
    good = lab.commit()
    with Controller(lab) as ctl:  # drift every 600 s: only the loop itself can finish the job
        ctl.wait_pass(1, outcome="applied")
        want = lab.running()
        lab.providers["gamma"] = _slow(lab, "gamma", delay=120, timeout=180)
        lab.commit("gamma: would wait two minutes")
        ctl.wait_event("starting", container=lab.cname("gamma"))
        lab.providers["gamma"]["stauts"] = "active"  # the newer commit is invalid: nothing of it can run
        bad = lab.commit("gamma: a typo")
        assert ctl.wait_pass(1, commit=bad[:12])["outcome"] == "invalid"
        # the interrupted pass's gamma is not the last good commit's: it goes, without waiting for drift
        wait_for(lambda: lab.running() == want, timeout=30)
        assert lab.status()["last_good"] == good and lab.status()["drift"] == []
        assert ctl.terminate() == 0


def test_the_flap_limit_stops_a_crash_loop(lab: Lab) -> None:
    lab.providers["alpha"]["container"]["env"] = {"STUB_EXIT_AFTER": "3"}  # healthy, then exits, again and again
    lab.commit("alpha crashes every 3 s")
    with Controller(lab, "--drift-interval-s", "1", "--flap-limit", "2", "--flap-window-s", "300") as ctl:
        ctl.wait_pass(1, outcome="applied")
        flap = ctl.wait_event("flapping", timeout=90, container=lab.cname("alpha"))
        assert flap["restarts"] > 2
        info = lab.containers()[lab.cname("alpha")]
        wait_for(lambda: not lab.containers()[lab.cname("alpha")]["State"]["Running"], timeout=20)
        count = lab.containers()[lab.cname("alpha")]["RestartCount"]
        time.sleep(6)  # six drift checks: nobody brings it back
        after = lab.containers()[lab.cname("alpha")]
        assert after["RestartCount"] == count and not after["State"]["Running"]
        assert after["Id"] == info["Id"] and after["HostConfig"]["RestartPolicy"]["Name"] == "no"
        status = ctl.status()
        assert lab.cname("alpha") in status["controller"]["flapping"]
        assert _sample(ctl.request("/metrics")[1], "llm_gitops_flapping", container=lab.cname("alpha")) == 1
        code, out, _ = lab.cli("status", "--state-dir", str(lab.state))
        assert f"flapping        {lab.cname('alpha')}" in out
        assert ctl.terminate() == 0


def test_suspend_holds_every_change_until_resume(lab: Lab) -> None:
    lab.commit()
    with Controller(lab, "--drift-interval-s", "1") as ctl:
        ctl.wait_pass(1, outcome="applied")
        code, out, _ = lab.cli("suspend", "--state-dir", str(lab.state), "--reason", "GPU maintenance")
        assert code == 0
        ctl.wait_event("suspended")
        alpha = lab.ids()[lab.cname("alpha")]
        lab.engine.api.stop(alpha, timeout=1)
        time.sleep(4)
        assert not lab.engine.api.inspect_container(alpha)["State"]["Running"]  # left as it is
        code, _, err = lab.cli("retry", "--state-dir", str(lab.state))
        assert code == 1 and "suspended since" in err and "GPU maintenance" in err
        assert lab.cli("resume", "--state-dir", str(lab.state))[0] == 0
        wait_for(lambda: lab.engine.api.inspect_container(alpha)["State"]["Running"], timeout=30)
        assert ctl.terminate() == 0


def test_retry_is_passed_to_the_running_controller(lab: Lab) -> None:
    lab.commit()
    with Controller(lab) as ctl:
        ctl.wait_pass(1, outcome="applied")
        lab.providers["alpha"]["container"]["env"] = {"STUB_UNHEALTHY": "1"}
        lab.providers["alpha"]["container"]["startup_timeout_s"] = 3
        bad = lab.commit("alpha never healthy")
        assert ctl.wait_pass(1, commit=bad[:12])["outcome"] == "failed"
        code, out, _ = lab.cli("retry", "--state-dir", str(lab.state), "--wait", "120")
        assert "asked the running controller" in out and "failed" in out and code == 1
        assert [e["trigger"] for e in ctl.passes(commit=bad[:12])] == ["commit", "retry"]
        assert ctl.terminate() == 0


# --------------------------------------------------------------------------- a URL source and its webhook


def _sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_polled_url_applies_on_a_signed_webhook_and_refuses_a_bad_one(lab: Lab) -> None:
    lab.commit("first")
    url = f"file://{lab.repo.path}"
    secret = "whsec-" + "x" * 20
    with Controller(lab, repo=url, env={"LLM_GITOPS_WEBHOOK_SECRET": secret}) as ctl:  # polls every 600 s
        ctl.wait_pass(1, outcome="applied")
        assert (lab.state / "source.git").is_dir()
        lab.providers["alpha"]["container"]["args"] = ["--seed", "9"]
        second = lab.commit("alpha: new args")
        body = json.dumps({"ref": "refs/heads/main", "after": second}).encode()
        for headers in ({}, {"X-Hub-Signature-256": _sign("another-secret", body)},
                        {"X-Hub-Signature-256": "sha256=" + "0" * 64}):
            code, text = ctl.request("/hooks/git", body=body, headers=headers)
            assert code == 401, text
        time.sleep(3)
        assert not ctl.events("pass_start", commit=second[:12])  # nothing started
        code, _ = ctl.request("/hooks/git", body=body, headers={"X-Hub-Signature-256": _sign(secret, body),
                                                                "X-GitHub-Event": "push"})
        assert code == 202
        done = ctl.wait_pass(1, timeout=60, commit=second[:12])
        assert done["outcome"] == "applied"
        assert ctl.terminate() == 0


# --------------------------------------------------------------------------- signed commits


def test_an_unsigned_head_is_refused_in_signed_mode_and_a_signed_one_applies(lab: Lab, tmp_path: Path) -> None:
    key = tmp_path / "signer"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops", "-f", str(key)], check=True)
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"t@example.invalid {key.with_suffix('.pub').read_text()}")
    lab.repo._git("config", "gpg.format", "ssh")
    lab.repo._git("config", "user.signingkey", str(key))
    lab.repo._git("config", "commit.gpgsign", "true")
    good = lab.commit("signed")
    args = ("--require-signed", "--allowed-signers", str(signers))
    with Controller(lab, *args) as ctl:
        assert ctl.wait_pass(1)["outcome"] == "applied"
        lab.repo._git("config", "commit.gpgsign", "false")
        lab.providers["alpha"]["container"]["args"] = ["--seed", "5"]
        unsigned = lab.commit("unsigned")
        refused = ctl.wait_pass(1, commit=unsigned[:12])
        assert refused["outcome"] == "skipped"
        assert lab.running()[lab.cname("alpha")] == _hash_at(lab, good, "alpha")
        status = lab.status()
        assert "is not signed" in status["quarantined"][unsigned]["reason"]
        lab.repo._git("config", "commit.gpgsign", "true")
        signed = lab.commit("signed again")
        assert ctl.wait_pass(1, commit=signed[:12])["outcome"] == "applied"
        assert ctl.terminate() == 0


def _hash_at(lab: Lab, commit: str, key: str) -> str:
    snapshot = json.loads((lab.state / "applied.json").read_text())
    if snapshot["commit"] == commit:
        return next(c["spec_hash"] for c in snapshot["desired"]["containers"] if c["name"] == lab.cname(key))
    raise AssertionError("not the applied commit")


def test_sigint_is_handled_like_sigterm(lab: Lab) -> None:
    lab.commit()
    with Controller(lab) as ctl:
        ctl.wait_pass(1)
        ctl.proc.send_signal(signal.SIGINT)
        assert ctl.proc.wait(timeout=30) == 0


def test_sigterm_while_a_canary_boots_removes_the_canary(lab: Lab) -> None:
    lab.commit()
    with Controller(lab) as ctl:
        ctl.wait_pass(1, outcome="applied")
        gateway = lab.ids()[lab.cname("gateway")]
        # a new public name changes the config (a canary), and a slow gateway image start keeps it booting
        lab.stack["gateway"]["env"] = {"STUB_START_DELAY": "60"}
        lab.stack["gateway"]["startup_timeout_s"] = 120
        lab.mappings["exact_matches"]["quick"] = {"provider": "beta", "backend_model": "m-beta"}
        lab.commit("a new name; the gateway starts slowly")
        ctl.wait_event("canary_start")
        wait_for(lambda: [n for n in lab.containers() if "canary" in n], timeout=20)
        assert ctl.terminate() == 0
    assert not [n for n in lab.containers() if "canary" in n]   # removed on the way out
    assert lab.ids()[lab.cname("gateway")] == gateway and lab.cname("gateway") in lab.running()  # untouched
