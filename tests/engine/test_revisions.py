"""rollback, retry, the first failure, lost state files, and plan --live, through the real CLI.

Two controllers at once (the lock, a second state dir on one stack) are in tests/faults/."""

from __future__ import annotations

import json

import pytest

from engine.lab import Lab, stub_provider

pytestmark = pytest.mark.docker


def test_rollback_pins_until_a_new_commit_and_retry_unpins(lab: Lab) -> None:
    first = lab.commit("first")
    assert lab.apply()[0] == 0
    lab.providers["alpha"]["container"]["args"] = ["--seed", "5"]
    lab.commit("second")
    assert lab.apply()[0] == 0
    second_hash = lab.running()[lab.cname("alpha")]

    code, out, err = lab.cli("rollback", "--state-dir", str(lab.state))
    assert code == 0, out + err
    assert f"Pinned to {first[:12]}" in out
    first_hash = lab.running()[lab.cname("alpha")]
    assert first_hash != second_hash
    status = lab.status()
    assert status["pinned"] == first and status["last_applied"] == first

    code, out, _ = lab.apply()  # the branch head has not moved: the pin holds
    assert code == 0 and lab.running()[lab.cname("alpha")] == first_hash

    code, out, _ = lab.cli("retry", "--state-dir", str(lab.state))  # back to the head
    assert code == 0, out
    assert lab.running()[lab.cname("alpha")] == second_hash and lab.status()["pinned"] is None

    code, out, _ = lab.cli("rollback", "--state-dir", str(lab.state), "--to", first[:10])
    assert code == 0 and lab.running()[lab.cname("alpha")] == first_hash
    lab.providers["beta"]["description"] = "a newer commit ends the pin"
    third = lab.commit("third")
    assert lab.apply()[0] == 0
    assert lab.running()[lab.cname("alpha")] == second_hash
    assert lab.status()["pinned"] is None and lab.status()["last_applied"] == third


def test_retry_tries_a_quarantined_commit_again(lab: Lab) -> None:
    lab.commit("first")
    assert lab.apply()[0] == 0
    lab.providers["gamma"] = stub_provider(lab.ports["gamma"], "m-gamma", image="llm-gitops-test/later:1")
    bad = lab.commit("needs an image that is not built yet")
    assert lab.apply()[0] == 1
    assert bad in lab.status()["quarantined"]
    lab.engine.api.tag("llm-gitops-test/stub:1", "llm-gitops-test/later", "1")  # the operator builds it
    try:
        assert lab.apply()[0] == 1  # still quarantined
        code, out, err = lab.cli("retry", "--state-dir", str(lab.state))
        assert code == 0, out + err
        assert lab.cname("gamma") in lab.running() and lab.status()["quarantined"] == {}
    finally:
        lab.cleanup()
        lab.engine.api.remove_image("llm-gitops-test/later:1")


def test_without_a_last_good_commit_a_failure_stops_nothing_else(lab: Lab) -> None:
    lab.providers["beta"]["container"].update(env={"STUB_UNHEALTHY": "1"}, startup_timeout_s=2)
    bad = lab.commit("broken from the start")
    code, out, _ = lab.apply()
    assert code == 1
    assert "no last good commit" in out
    states = {n: i["State"]["Status"] for n, i in lab.containers().items()}
    # alpha (healthy, started before beta) keeps running; beta is stopped, not crash-looping
    assert states[lab.cname("alpha")] == "running"
    assert states[lab.cname("beta")] == "exited"
    assert lab.cname("gateway") not in states  # never reached
    status = lab.status()
    assert status["last_good"] is None and bad in status["quarantined"]


def test_plan_live_says_what_would_restart_and_why(lab: Lab) -> None:
    lab.commit("first")
    assert lab.apply()[0] == 0
    lab.providers["alpha"]["container"]["args"] = ["--seed", "9"]
    head = lab.commit("alpha args")
    code, out, _ = lab.cli("plan", "--live", "--repo", str(lab.repo.path), "--state-dir", str(lab.state))
    assert code == 0, out
    assert "recreate  " + lab.cname("alpha") in out
    assert "providers.yaml: alpha.container.args" in out
    code, out, _ = lab.cli("plan", "--live", "--repo", str(lab.repo.path), "--state-dir", str(lab.state),
                           "--format", "json", "--detailed-exitcode")
    assert code == 2
    body = json.loads(out)
    assert body["head"] == head and [s["container"] for s in body["steps"] if s["action"] != "unchanged"] == \
           [lab.cname("alpha")]
    assert lab.history()[-1]["commit"] != head  # planning applies nothing


def test_rollback_to_a_commit_that_never_worked_needs_force(lab: Lab) -> None:
    lab.commit("first")
    assert lab.apply()[0] == 0
    lab.providers["alpha"]["container"].update(env={"STUB_UNHEALTHY": "1"}, startup_timeout_s=2)
    bad = lab.commit("bad")
    assert lab.apply()[0] == 1
    ids = lab.ids()
    code, out, err = lab.cli("rollback", "--state-dir", str(lab.state), "--to", bad)
    assert code == 1 and "is not a known good commit (quarantined:" in err and "--force" in err
    assert lab.ids() == ids and lab.status()["pinned"] is None


def test_a_repository_url_is_mirrored_into_the_state_dir_and_fetched_each_pass(lab: Lab) -> None:
    url = f"file://{lab.repo.path}"
    first = lab.commit("first")
    code, out, err = lab.cli("apply", "--repo", url, "--rev", "main", "--state-dir", str(lab.state))
    assert code == 0, out + err
    assert (lab.state / "source.git").is_dir() and lab.status()["last_applied"] == first
    lab.providers["alpha"]["container"]["args"] = ["--seed", "4"]
    second = lab.commit("second")
    code, out, _ = lab.cli("plan", "--live", "--repo", url, "--head", "main", "--state-dir", str(lab.state))
    assert "No changes" in out  # plan --live reads the mirror as it is: not fetched yet
    code, out, err = lab.cli("apply", "--repo", url, "--rev", "main", "--state-dir", str(lab.state))
    assert code == 0, out + err
    assert lab.status()["last_applied"] == second and f"recreated {lab.cname('alpha')}" in out


def test_a_lost_owner_file_is_recognised_by_the_state_dirs_path(lab: Lab) -> None:
    lab.commit("first")
    assert lab.apply()[0] == 0
    ids = lab.ids()
    (lab.state / "owner").unlink()
    code, out, err = lab.apply()
    assert code == 0, out + err
    assert lab.ids() == ids and lab.status()["drift"] == []


def test_a_copied_state_dir_is_another_one(lab: Lab) -> None:
    import shutil
    lab.commit("first")
    assert lab.apply()[0] == 0
    ids = lab.ids()
    copy = lab.state.parent / "copied-state"
    shutil.copytree(lab.state, copy)
    lab.providers["alpha"]["container"]["args"] = ["--seed", "3"]
    lab.commit("change")
    code, out, err = lab.cli("apply", "--repo", str(lab.repo.path), "--state-dir", str(copy))
    assert code == 1 and f"managed from another state dir: {lab.state}" in out, out + err
    assert lab.ids() == ids


def test_a_lost_record_still_goes_back_to_what_the_state_dir_kept(lab: Lab) -> None:
    good = lab.commit("good")
    assert lab.apply()[0] == 0
    ids = lab.ids()
    (lab.state / "record.json").rename(lab.state / "record.json.broken")  # as the hint for a bad record says
    lab.providers["alpha"]["container"].update(env={"STUB_EXIT_AFTER": "0"})
    lab.commit("bad")
    code, out, err = lab.apply()
    assert code == 1 and f"Rolled back to {good[:12]}" in out, out + err
    assert lab.ids() == ids and all(i["State"]["Running"] for i in lab.containers().values())


def test_with_nothing_kept_a_failure_brings_back_what_the_pass_stopped(lab: Lab) -> None:
    lab.commit("good")
    assert lab.apply()[0] == 0
    ids = lab.ids()
    for name in ("record.json", "applied.json"):
        (lab.state / name).unlink()
    lab.providers["alpha"]["container"].update(env={"STUB_EXIT_AFTER": "0"})
    lab.commit("bad")
    code, out, err = lab.apply()
    assert code == 1 and "no last good commit" in out and f"brought back what this pass had stopped " \
        f"({lab.cname('alpha')})" in out, out + err
    running = {n: i["Id"] for n, i in lab.containers().items() if i["State"]["Running"]}
    assert running[lab.cname("alpha")] == ids[lab.cname("alpha")]
