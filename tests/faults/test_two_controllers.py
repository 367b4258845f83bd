"""Two controllers at once: on the same state dir (a second `run`, an `apply` beside a `run` or
beside another `apply`), and on two state dirs that would both manage the same stack.

On one state dir the lock admits one; the other exits at once, naming the holder and what to
do instead. On two state dirs the second finds the first's containers labelled with another
state dir and is blocked before it touches anything, pass after pass. Either way the first
keeps serving, untouched.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest

from engine.lab import wait_for
from engine.loop_lab import Controller
from faults.survival import FaultLab, assert_survived, note

pytestmark = pytest.mark.docker


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.getcwd()}


def _run(lab: FaultLab, state: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller", "run", "--repo", str(lab.repo.path),
                           "--state-dir", state, "--http-port", "0"],
                          capture_output=True, text=True, timeout=60, env=_env())


def test_a_second_controller_on_a_running_loops_state_dir_is_refused(lab: FaultLab) -> None:
    good = lab.commit()
    with Controller(lab) as ctl:
        ctl.wait_pass(1, outcome="applied")
        ids = lab.ids()
        second = _run(lab, str(lab.state))
        note("a second llm-gitops run (stderr)", second.stderr)
        assert second.returncode == 1
        assert "a running controller owns it" in second.stderr and f"pid {ctl.proc.pid}, run" in second.stderr
        # `apply` is refused the same way, and told what to do instead
        code, _, err = lab.apply()
        assert code == 1 and "llm-gitops retry" in err
        assert lab.ids() == ids
        assert_survived(lab, good=good, cause=f"controller      running (pid {ctl.proc.pid}, idle", ctl=ctl,
                        loop_cause='"state": "idle"')
        assert ctl.terminate() == 0


def test_a_second_pass_while_an_apply_runs_is_refused_and_the_first_finishes(lab: FaultLab) -> None:
    lab.serve("first")
    lab.providers["alpha"]["container"].update(args=["--seed", "6"], env={"STUB_START_DELAY": "4"})
    new = lab.commit("a slow alpha")
    first = lab.apply_in_background(stdout=subprocess.PIPE)
    try:
        wait_for(lambda: any(i["Config"]["Labels"].get("llm-gitops.revision") == new
                             for i in lab.containers().values()), timeout=30)  # it is mid-pass
        code, _, err = lab.apply()
        note("a second llm-gitops apply (stderr)", err)
        assert code == 1 and "in use by another llm-gitops" in err and f"pid {first.pid}, apply" in err, err
        second = _run(lab, str(lab.state))
        assert second.returncode == 1 and f"pid {first.pid}, apply" in second.stderr, second.stderr
        out, _ = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=10)
    assert first.returncode == 0 and f"{new[:12]}: applied" in out, out
    assert_survived(lab, good=new, cause=f"{new[:12]} applied: recreated {lab.cname('alpha')}")


def test_two_loops_on_two_state_dirs_do_not_fight_over_one_stack(lab: FaultLab) -> None:
    good = lab.commit("first")
    other = copy.copy(lab)  # the same repo and stack, another state dir
    other.state = lab.state.parent / "other-state"
    with Controller(lab) as ctl:
        ctl.wait_pass(1, outcome="applied")
        ids = lab.ids()
        with Controller(other) as intruder:
            blocked = intruder.wait_pass(1)
            assert blocked["outcome"] == "blocked", blocked
            cause = f"managed from another state dir: {lab.state.resolve()}"
            assert blocked["message"].startswith("blocked before anything was stopped") and cause in blocked["message"]
            intruder.wait_pass(2)  # it backs off and tries again: still blocked, still nothing touched
            assert {p["outcome"] for p in intruder.passes()} == {"blocked"}
            assert cause in str(intruder.status()["last_pass"])
            code, out, _ = other.cli("status", "--state-dir", str(other.state))
            note("llm-gitops status of the second state dir", out)
            assert code == 0 and cause in out and "backoff         " in out, out
            assert intruder.terminate() == 0
        assert lab.ids() == ids
        assert_survived(lab, good=good, cause=f"controller      running (pid {ctl.proc.pid}, idle", ctl=ctl,
                        loop_cause='"state": "idle"')
        assert ctl.terminate() == 0
