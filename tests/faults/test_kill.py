"""The controller killed with SIGKILL at each step of a pass; the next pass repairs what it left.

One change exercises every step a pass has: alpha is replaced (stopped and set aside, a new
one created and health-gated) and a new public name changes the gateway's config (staged,
proven on a canary, swapped in, the gateway recreated). `llm-gitops apply` runs as its own
process with JSON logs; the test reads its log as it is written and sends SIGKILL the moment
the step's event appears, so the process dies inside the engine call or the wait that comes
next. Then the state dir must still parse, `status` must say that a pass was interrupted,
and the next pass must converge to the commit with nothing left behind.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest

from engine.loop_lab import Controller
from faults.passes import PassInBackground
from faults.survival import FaultLab, assert_survived, note

pytestmark = pytest.mark.docker

# step -> (event, a predicate on the line's fields, given the Lab): the events one pass emits, in
# order, from the first one after the pass marked its commit in flight (before it, nothing was
# touched: a kill there is a pass that never ran)
STEPS: dict[str, tuple[str, Any]] = {
    "config_staged": ("config_staged", lambda e, lab: True),            # staged and checked; nothing stopped
    "canary_start": ("canary_start", lambda e, lab: True),              # the canary is being created
    "stopped": ("stopped", lambda e, lab: e.get("container") == lab.cname("alpha")),     # renamed aside next
    "starting": ("starting", lambda e, lab: e.get("container") == lab.cname("alpha")),   # inside its health gate
    "healthy": ("healthy", lambda e, lab: e.get("container") == lab.cname("alpha")),     # restart policy next
    "config_swapped": ("config_swapped", lambda e, lab: True),          # the old gateway still runs
    "gateway_starting": ("starting", lambda e, lab: e.get("container") == lab.cname("gateway")),  # its gate
    "gateway_healthy": ("healthy", lambda e, lab: e.get("container") == lab.cname("gateway")),  # clean-up, record
}


@pytest.mark.parametrize("step", list(STEPS))
def test_a_pass_killed_at_any_step_is_finished_by_the_next(lab: FaultLab, step: str) -> None:
    del lab.providers["beta"]  # one provider is enough for every step, and a gate less per pass
    lab.serve()
    lab.providers["alpha"]["container"].update(args=["--seed", "4"], env={"STUB_START_DELAY": "1"})
    lab.mappings["exact_matches"]["quick"] = {"provider": "alpha", "backend_model": "m-alpha"}
    new = lab.commit("alpha replaced, and a new public name")

    event, when = STEPS[step]
    with PassInBackground(lab) as killed:
        killed.wait_for(event, lambda e: bool(when(e, lab)), then=killed.kill)
        assert killed.finish(timeout=30)[0] == -signal.SIGKILL
    assert killed.lines[0]["event"] == "pass_start" and "pass_end" not in [e["event"] for e in killed.lines]
    # right after the kill: the state dir reads, and status says a pass did not finish
    code, out, err = lab.cli("status", "--state-dir", str(lab.state))
    assert code == 0, err
    note("llm-gitops status, right after the kill", out)
    assert f"interrupted     {new[:12]}: a pass started applying it and did not finish" in out, out

    code, out, err = lab.apply()
    assert code == 0, out + err
    assert_survived(lab, good=new, cause=[f"{new[:12]} applied: ",
                                          f"a pass on {new[:12]} had been interrupted before it finished"])


def test_a_loop_killed_mid_pass_is_finished_by_its_next_start(lab: FaultLab) -> None:
    """The same for `llm-gitops run`: killed inside a health gate, started again, it converges."""
    del lab.providers["beta"]
    lab.serve()
    with Controller(lab) as first:
        first.wait_pass(1)
        lab.providers["alpha"]["container"].update(args=["--seed", "4"], env={"STUB_START_DELAY": "2"})
        new = lab.commit("alpha replaced, slowly")
        first.wait_event("starting", container=lab.cname("alpha"))
        first.proc.send_signal(signal.SIGKILL)
        assert first.proc.wait(timeout=10) == -signal.SIGKILL
    code, out, _ = lab.cli("status", "--state-dir", str(lab.state))
    assert "controller      not running" in out and f"interrupted     {new[:12]}" in out, out
    with Controller(lab) as again:
        assert again.wait_pass(1)["outcome"] == "applied"
        said = f"a pass on {new[:12]} had been interrupted before it finished"
        assert_survived(lab, good=new, cause=[f"(start) {new[:12]} applied: ", said], ctl=again, loop_cause=said)
        assert again.terminate() == 0
