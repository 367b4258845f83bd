"""Bad commits and a hostile host, against the real engine: the last good stack keeps serving.

The fault cases proper (a container exiting on start or never healthy, a missing image, a
foreign port, a controller killed at each step, a force-push, ...) are in tests/faults/, each
ending with the same four-part survival check; these are the other failure paths."""

from __future__ import annotations

import hashlib
import os
import subprocess
from typing import Any

import pytest

from engine.lab import Lab, free_port, stub_provider, wait_for

pytestmark = pytest.mark.docker


def _config_digest(lab: Lab) -> str:
    return hashlib.sha256((lab.state / "gateway" / "config.yaml").read_bytes()).hexdigest()


def test_an_invalid_commit_changes_nothing(lab: Lab) -> None:
    lab.commit("good")
    assert lab.apply()[0] == 0
    ids, digest = lab.ids(), _config_digest(lab)
    lab.providers["alpha"]["base_url"] = "http://127.0.0.1:notaport"
    bad = lab.commit("typo")
    code, out, _ = lab.apply()
    assert code == 1
    assert f"{bad[:12]}: invalid spec" in out and "providers.yaml:" in out
    assert lab.ids() == ids and _config_digest(lab) == digest
    assert lab.status()["quarantined"][bad]["reason"].startswith("invalid spec")


def test_containers_without_our_labels_are_never_touched(lab: Lab) -> None:
    bystander = lab.run_foreign(f"{lab.name}-bystander", lab.ports["cache"])
    lab.providers["gamma"] = stub_provider(lab.ports["gamma"], "m-gamma")
    lab.commit("gamma")
    impostor = lab.run_foreign(lab.cname("gamma"), free_port())  # named like ours, not ours
    code, out, _ = lab.apply()
    assert code == 1
    assert f"a container named {lab.cname('gamma')}" in out and "without llm-gitops labels" in out
    assert lab.containers() == {}  # nothing was created either: it was found before anything ran
    del lab.providers["gamma"]
    lab.commit("no gamma")
    assert lab.apply()[0] == 0
    for cid in (bystander, impostor):
        info = lab.engine.api.inspect_container(cid)
        assert info["State"]["Running"] and info["RestartCount"] == 0
    assert lab.engine.api.inspect_container(impostor)["Name"] == f"/{lab.cname('gamma')}"


def test_a_secret_reaches_its_container_and_nothing_else(lab: Lab, monkeypatch: Any) -> None:
    value = "canary-" + os.urandom(8).hex()
    monkeypatch.setenv("ALPHA_TOKEN", value)
    lab.providers["alpha"]["container"]["secret_env"] = ["ALPHA_TOKEN"]
    lab.commit("alpha gets a token")
    code, out, err = lab.apply()
    assert code == 0, out + err
    info = lab.containers()[lab.cname("alpha")]
    assert f"ALPHA_TOKEN={value}" in info["Config"]["Env"]
    # the process inside has it
    exec_id = lab.engine.api.exec_create(info["Id"], ["python3", "-c", "import os; print(os.environ['ALPHA_TOKEN'])"])
    assert lab.engine.api.exec_start(exec_id).decode().strip() == value

    seen = out + err
    for c in lab.containers().values():
        seen += repr(c["Config"]["Labels"])
    code, plan_out, _ = lab.cli("plan", "--live", "--repo", str(lab.repo.path), "--state-dir", str(lab.state),
                                "--format", "json")
    seen += plan_out + repr(lab.status()) + repr(lab.history())
    for path in lab.state.rglob("*"):
        if path.is_file():
            seen += path.read_bytes().decode("utf-8", "replace")
    assert value not in seen

    # rotating the secret restarts its container, and only it
    ids = lab.ids()
    monkeypatch.setenv("ALPHA_TOKEN", value + "-rotated")
    assert lab.apply()[0] == 0
    now = lab.ids()
    assert now[lab.cname("alpha")] != ids[lab.cname("alpha")]
    assert now[lab.cname("beta")] == ids[lab.cname("beta")]


def test_a_failing_containers_log_tail_never_shows_a_secret(lab: Lab, monkeypatch: Any) -> None:
    value = "canary-" + os.urandom(8).hex()
    monkeypatch.setenv("BETA_TOKEN", value)
    lab.commit("good")
    assert lab.apply()[0] == 0
    lab.providers["beta"]["container"].update(secret_env=["BETA_TOKEN"], startup_timeout_s=2,
                                              env={"STUB_LOG_ENV": "1", "STUB_UNHEALTHY": "1"})
    lab.commit("beta prints its env and never gets healthy")
    code, out, err = lab.apply()
    assert code == 1 and "its last log lines" in out
    assert "stub: env BETA_TOKEN=<BETA_TOKEN>" in out  # the tail is shown, the value is not
    assert value not in out + err + repr(lab.history()) + repr(lab.status())


def test_renaming_the_stack_replaces_the_old_containers(lab: Lab) -> None:
    lab.commit("first")
    assert lab.apply()[0] == 0
    old_ids = set(lab.ids().values())
    old_name = lab.name
    lab.name = lab.name + "b"
    lab.stack["name"] = lab.name
    lab.commit("rename the stack")
    try:
        code, out, err = lab.apply()  # same ports: the old containers must go first
        assert code == 0, out + err
        assert f"removed {old_name}-" in out
        assert lab.stack_ids(old_name) == []
        assert sorted(lab.ids()) == sorted(lab.cname(k) for k in ("alpha", "beta", "gateway"))
        assert not old_ids & set(lab.ids().values())
    finally:
        lab.remove_stack(old_name)


def test_a_hand_edited_gateway_config_is_kept_and_put_back(lab: Lab) -> None:
    lab.commit("first")
    assert lab.apply()[0] == 0
    live = lab.state / "gateway" / "config.yaml"
    good = live.read_text()
    live.write_text(good + "# edited by hand\n")
    assert "gateway config file differs from the applied commit's (edited by hand?)" in lab.status()["drift"]
    ids = lab.ids()
    code, out, err = lab.apply()
    assert code == 0, out + err
    assert f"restarted {lab.cname('gateway')}" in out
    assert live.read_text() == good
    kept = list(lab.state.glob("gateway-config.edited-*.yaml"))
    assert len(kept) == 1 and kept[0].read_text().endswith("# edited by hand\n")
    assert lab.ids() == ids  # the same container, restarted
    assert lab.status()["drift"] == []


def test_a_wrong_path_is_an_error_not_a_quarantine(lab: Lab) -> None:
    commit = lab.commit("first")
    assert lab.apply()[0] == 0
    code, out, err = lab.apply("--path", "no/such/dir")
    assert code == 1 and "no directory `no/such/dir`" in err and "check --path" in err
    assert lab.status()["quarantined"] == {}
    assert lab.apply()[0] == 0 and lab.status()["last_applied"] == commit


def test_a_failing_commit_that_renames_the_stack_goes_back_to_the_old_one(lab: Lab) -> None:
    good = lab.commit("good")
    assert lab.apply()[0] == 0
    ids = lab.ids()
    old_name = lab.name
    lab.stack["name"] = old_name + "x"
    lab.providers["beta"]["container"].update(env={"STUB_UNHEALTHY": "1"}, startup_timeout_s=2)
    bad = lab.commit("renamed and broken")
    try:
        code, out, err = lab.apply()
        assert code == 1, out + err
        assert f"Rolled back to {good[:12]}, which serves again" in out
        assert lab.ids() == ids and all(lab.containers()[n]["State"]["Running"] for n in ids), out + err
        assert lab.stack_ids(old_name + "x") == []
        assert bad in lab.status()["quarantined"]
        assert lab.apply()[0] == 1 and lab.ids() == ids  # skipped, and the old stack still serves
    finally:
        lab.remove_stack(old_name + "x")


def test_a_deleted_gateway_config_is_written_again(lab: Lab) -> None:
    lab.commit("first")
    assert lab.apply()[0] == 0
    live = lab.state / "gateway" / "config.yaml"
    good = live.read_bytes()
    live.unlink()
    code, out, err = lab.apply()
    assert code == 0, out + err
    assert live.read_bytes() == good and f"restarted {lab.cname('gateway')}" in out
    assert not list(lab.state.glob("gateway-config.edited-*"))
    assert lab.apply()[1].endswith("nothing to do; everything runs as specified\n")


def test_a_container_removed_by_hand_mid_gate_fails_the_pass_but_quarantines_nothing(lab: Lab) -> None:
    lab.commit("first")
    assert lab.apply()[0] == 0
    lab.providers["alpha"]["container"].update(env={"STUB_START_DELAY": "20"}, startup_timeout_s=60)
    commit = lab.commit("slow alpha")
    proc = lab.apply_in_background(stdout=subprocess.PIPE)
    new = wait_for(lambda: next((i["Id"] for n, i in lab.containers().items() if n == lab.cname("alpha")
                                 and i["State"]["Running"] and "STUB_START_DELAY=20" in i["Config"]["Env"]), None))
    lab.engine.api.remove_container(new, force=True)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "was removed outside llm-gitops while the pass waited for it" in out and "Rolled back" in out
    assert commit not in lab.status()["quarantined"]
