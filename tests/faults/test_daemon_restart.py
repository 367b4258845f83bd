"""The Docker daemon restarted in the middle of a pass.

The stack runs on a private dockerd (tests/faults/private_engine.py: the machine's own
daemon is shared, and restarting it would break everyone else's containers), the
controller reaches it through DOCKER_HOST. While a pass waits for a slow new container's
health, the daemon is stopped with SIGTERM, as `systemctl restart docker` does, and started
again. The pass must fail naming the engine (the commit is not quarantined: the host failed,
not the commit), wait for the engine to answer again and go back to the last good commit,
which then serves; and the next pass must converge on the new commit.
"""

from __future__ import annotations

import pytest

from faults.passes import PassInBackground
from faults.private_engine import PrivateEngine
from faults.survival import FaultLab, assert_survived, note

pytestmark = pytest.mark.docker


def test_a_daemon_restarted_mid_pass_fails_the_pass_clearly_and_the_next_converges(
        private_engine: PrivateEngine, lab: FaultLab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", private_engine.url)
    lab.engine = private_engine.client
    good = lab.serve()
    lab.providers["alpha"]["container"].update(args=["--seed", "7"], env={"STUB_START_DELAY": "8"},
                                              startup_timeout_s=60)
    new = lab.commit("alpha: new args, and a slow start")

    with PassInBackground(lab) as cut:
        cut.wait_for("starting", lambda e: e.get("container") == lab.cname("alpha"))
        down_s = private_engine.restart()  # mid health gate
        code, out = cut.finish(timeout=120)
    engine = f"docker engine {private_engine.url}: does not answer"
    assert code == 1 and f"{new[:12]}: failed: {engine}" in out, out
    assert "start it (make engine, or systemctl start docker) or set DOCKER_HOST" in out
    # it waited for the engine, then went back: the last good stack serves before any next pass
    assert f"Rolled back to {good[:12]}, which serves again" in out, out
    status = lab.status()
    assert new not in status["quarantined"]  # the host failed, not the commit
    code, text, _ = lab.cli("status", "--state-dir", str(lab.state))
    assert code == 0 and engine in text, text
    assert_survived(lab, good=good, cause=engine)
    note("llm-gitops apply", out)
    note("llm-gitops status", text)
    print(f"the private daemon was down for {down_s:.1f} s")  # for information (pytest -s)

    code, out, err = lab.apply()  # the daemon is back: the next pass converges
    assert code == 0 and f"{new[:12]}: applied" in out, out + err
    assert_survived(lab, good=new, cause=f"{new[:12]} applied")
