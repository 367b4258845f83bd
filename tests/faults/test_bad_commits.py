"""A commit the host cannot run, and a host that blocks a commit: the last good stack serves on.

A container exiting on start, one whose health never passes and an image the host does not
have each fail the pass: the commit is rolled back (or refused before anything stopped) and
quarantined. A port a foreign process listens on blocks the pass before anything stops; it
is the host's problem, so nothing is quarantined and the next pass, once the port is free,
applies the commit.
"""

from __future__ import annotations

import socket

import pytest

from engine.lab import stub_provider
from faults.survival import FaultLab, assert_survived, note

pytestmark = pytest.mark.docker

CAUSES = {"never-healthy": "not healthy within its startup_timeout_s (3 s)",
          "exits-on-start": "exited with status 3",
          "missing-image": "image llm-gitops-test/no-such-image:1: not on this host"}


@pytest.mark.parametrize("breakage", sorted(CAUSES))
def test_a_failing_commit_rolls_back_is_quarantined_and_not_retried(lab: FaultLab, breakage: str) -> None:
    good = lab.serve()
    ids = lab.ids()

    container = lab.providers["alpha"]["container"]
    container["args"] = ["--seed", "2"]  # alpha is replaced...
    lab.mappings["exact_matches"]["quick"] = {"provider": "beta", "backend_model": "m-beta"}  # ...and the gateway
    if breakage == "never-healthy":
        container.update(env={"STUB_UNHEALTHY": "1"}, startup_timeout_s=3)
    elif breakage == "exits-on-start":
        container["env"] = {"STUB_EXIT_AFTER": "0"}
    else:
        container["image"] = "llm-gitops-test/no-such-image:1"
    bad = lab.commit(breakage)
    code, out, err = lab.apply()
    assert code == 1, out
    note("llm-gitops apply", out)
    assert f"{bad[:12]}: failed" in out and CAUSES[breakage] in out
    if breakage == "missing-image":
        assert "before anything was stopped" in out and lab.ids() == ids  # found before anything ran
    else:
        assert f"Rolled back to {good[:12]}, which serves again" in out and lab.cname("alpha") in out
    assert CAUSES[breakage] in lab.status()["quarantined"][bad]["reason"]
    assert_survived(lab, good=good, cause=[f"quarantined     {bad[:12]}", CAUSES[breakage]])

    # the next pass does not try it again, and changes nothing
    ids = lab.ids()
    code, out, _ = lab.apply()
    assert code == 1 and "quarantined" in out and "llm-gitops retry" in out
    assert lab.ids() == ids
    assert lab.history()[-1]["outcome"] == "failed"  # a skip writes no history
    assert_survived(lab, good=good, cause=CAUSES[breakage])


def test_a_port_held_by_a_foreign_listener_blocks_before_anything_stops(lab: FaultLab) -> None:
    good = lab.serve()
    ids = lab.ids()
    port = lab.ports["gamma"]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        lab.providers["alpha"]["container"]["args"] = ["--seed", "3"]  # would restart alpha...
        lab.providers["gamma"] = stub_provider(port, "m-gamma")      # ...and needs a taken port
        commit = lab.commit("gamma on a taken port")
        code, out, _ = lab.apply()
        assert code == 1
        cause = f"port {port}, wanted by {lab.cname('gamma')}, is held by a process or container llm-gitops does not manage"
        assert f"{commit[:12]}: blocked before anything was stopped" in out and cause in out
        assert f"ss -ltnp 'sport = :{port}'" in out
        assert lab.ids() == ids  # nothing was stopped
        assert commit not in lab.status()["quarantined"]  # the host's problem: tried again next pass
        assert_survived(lab, good=good, cause=["blocked before anything was stopped", cause])
    code, out, err = lab.apply()  # the listener is gone
    assert code == 0, out + err
    assert_survived(lab, good=commit, cause=[f"{commit[:12]} applied: ", f"created {lab.cname('gamma')}"])
