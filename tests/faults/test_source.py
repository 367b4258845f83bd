"""The git side fails: the remote is unreachable, the branch is force-pushed to an older commit
(or deleted), the good commit is force-pushed out of the repository altogether.

The loop runs as a real process (`llm-gitops run`) on a real repository; the stack must keep
being served (drift repair included) while git is gone, and `status` / `/status` say why.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.lab import wait_for
from engine.loop_lab import Controller
from faults.survival import FaultLab, assert_survived, note

pytestmark = pytest.mark.docker


def test_an_unreachable_remote_is_reported_and_the_stack_keeps_serving(lab: FaultLab, tmp_path: Path) -> None:
    first = lab.commit("first")
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(lab.repo.path), str(remote)], check=True)
    with Controller(lab, "--poll-interval-s", "1", "--drift-interval-s", "1", repo=f"file://{remote}") as ctl:
        ctl.wait_pass(1, outcome="applied")
        remote.rename(tmp_path / "gone.git")
        err = ctl.wait_event("source_error", timeout=30)
        note("the loop's log", json.dumps(err))
        assert "cannot reach the remote" in err["error"] and err["serving"] == first[:12]
        alpha = lab.ids()[lab.cname("alpha")]
        lab.engine.api.stop(alpha, timeout=1)  # drift repair goes on without the remote
        wait_for(lambda: lab.engine.api.inspect_container(alpha)["State"]["Running"], timeout=30)
        wait_for(lambda: lab.status()["drift"] == [], timeout=30)
        assert_survived(lab, good=first, cause=["source          ", "cannot reach the remote"], ctl=ctl,
                        loop_cause="cannot reach the remote")
        (tmp_path / "gone.git").rename(remote)
        ctl.wait_event("source_ok", timeout=30)
        wait_for(lambda: not ctl.status()["controller"]["source_error"], timeout=30)
        assert ctl.terminate() == 0


def test_a_force_push_back_and_a_deleted_branch_on_a_watched_repo(lab: FaultLab) -> None:
    first = lab.commit("first")
    with Controller(lab, "--drift-interval-s", "1", "--poll-interval-s", "1") as ctl:
        ctl.wait_pass(1, outcome="applied")
        lab.providers["alpha"]["container"]["args"] = ["--seed", "3"]
        second = lab.commit("second")
        ctl.wait_pass(1, commit=second[:12], outcome="applied")
        lab.repo._git("reset", "-q", "--hard", first)  # the branch moves back, as after a force-push
        back = ctl.wait_pass(2, commit=first[:12])
        assert back["outcome"] == "applied"
        assert_survived(lab, good=first, cause=f"(commit) {first[:12]} applied: recreated {lab.cname('alpha')}",
                        ctl=ctl, loop_cause=f"applied: recreated {lab.cname('alpha')}")

        lab.repo._git("checkout", "-q", "--detach")
        lab.repo._git("branch", "-D", "main")
        err = ctl.wait_event("source_error", timeout=30)
        assert "branch `main` does not exist any more" in err["error"]
        beta = lab.ids()[lab.cname("beta")]
        lab.engine.api.stop(beta, timeout=1)  # still served: drift repair goes on
        wait_for(lambda: lab.engine.api.inspect_container(beta)["State"]["Running"], timeout=30)
        wait_for(lambda: lab.status()["drift"] == [], timeout=30)
        assert_survived(lab, good=first, cause="branch `main` does not exist any more", ctl=ctl)
        lab.repo._git("checkout", "-q", "-b", "main")
        ctl.wait_event("source_ok", timeout=30)
        assert ctl.terminate() == 0


def test_going_back_needs_no_git_when_the_good_commit_was_force_pushed_away(lab: FaultLab) -> None:
    lab.serve("first")
    lab.providers["alpha"]["container"]["args"] = ["--seed", "8"]
    good = lab.commit("good")
    assert lab.apply()[0] == 0
    ids = lab.ids()
    lab.repo._git("reset", "-q", "--hard", "HEAD~1")  # the good commit leaves the branch...
    lab.providers["alpha"]["container"].update(args=["--seed", "9"], env={"STUB_EXIT_AFTER": "0"})
    bad = lab.commit("bad, on the rewritten branch")
    lab.repo._git("reflog", "expire", "--expire=now", "--all")
    lab.repo._git("gc", "-q", "--prune=now")  # ...and the repository
    assert subprocess.run(["git", "-C", str(lab.repo.path), "cat-file", "-e", good]).returncode != 0
    code, out, err = lab.apply()
    assert code == 1, out + err
    assert f"Rolled back to {good[:12]}, which serves again" in out
    assert lab.ids() == ids
    assert bad in lab.status()["quarantined"]
    assert_survived(lab, good=good, cause=[f"quarantined     {bad[:12]}", "exited with status 3",
                                           f"Rolled back to {good[:12]}, which serves again"])
