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

import json
import signal
import subprocess
import threading
from typing import Any

import pytest

from faults.survival import FaultLab, assert_survived

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


def kill_at(lab: FaultLab, event: str, when: Any, timeout: float = 60) -> list[dict[str, Any]]:
    """Run `llm-gitops apply` and SIGKILL it as soon as a log line matches; its lines until then."""
    proc = lab.apply_in_background(stderr=subprocess.PIPE)
    seen: list[dict[str, Any]] = []
    hit = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            seen.append(entry)
            if entry.get("event") == event and when(entry, lab):
                proc.send_signal(signal.SIGKILL)
                hit.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert hit.wait(timeout), f"no `{event}` within {timeout} s; the pass logged: {[e.get('event') for e in seen]}"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        reader.join(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    return seen


@pytest.mark.parametrize("step", list(STEPS))
def test_a_pass_killed_at_any_step_is_finished_by_the_next(lab: FaultLab, step: str) -> None:
    del lab.providers["beta"]  # one provider is enough for every step, and a gate less per pass
    lab.commit("good")
    assert lab.apply()[0] == 0
    lab.providers["alpha"]["container"].update(args=["--seed", "4"], env={"STUB_START_DELAY": "1"})
    lab.mappings["exact_matches"]["quick"] = {"provider": "alpha", "backend_model": "m-alpha"}
    new = lab.commit("alpha replaced, and a new public name")

    event, when = STEPS[step]
    seen = kill_at(lab, event, when)
    assert seen[-1]["event"] == event and seen[0]["event"] == "pass_start"
    # right after the kill: the state dir reads, and status says a pass did not finish
    code, out, err = lab.cli("status", "--state-dir", str(lab.state))
    assert code == 0, err
    assert f"interrupted     {new[:12]}: a pass started applying it and did not finish" in out, out

    code, out, err = lab.apply()
    assert code == 0, out + err
    assert_survived(lab, good=new, cause=[f"{new[:12]} applied: ",
                                          f"a pass on {new[:12]} had been interrupted before it finished"])
