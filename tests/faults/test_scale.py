"""A commit with 200 providers: 195 remote (no container: it must fit on a 2-core machine) and
5 stub containers. The pass applies it (a canary proves the 200-provider config, the gateway
is recreated), and the gateway lists every public name on /v1/models and answers each.
How long it took is printed for information (`pytest -s`); speed is measured by `make bench`,
never asserted here.
"""

from __future__ import annotations

import time

import pytest

from engine.lab import free_port, stub_provider
from faults.survival import FaultLab, assert_survived, note

pytestmark = pytest.mark.docker

REMOTE, LOCAL = 195, 5


def test_a_commit_with_200_providers_is_applied_and_every_name_is_served(lab: FaultLab) -> None:
    lab.serve("two providers")
    for key in ("gamma", "delta", "epsilon"):
        lab.ports[key] = free_port()
        lab.providers[key] = stub_provider(lab.ports[key], f"m-{key}", type_="llama_cpp")
    for i in range(REMOTE):
        lab.providers[f"remote-{i:03d}"] = {
            "type": "openai_compatible", "status": "active", "base_url": f"http://127.0.0.1:9/r{i:03d}/v1",
            "models": [{"name": f"remote-{i:03d}-chat", "context_length": 8192},
                       {"name": f"remote-{i:03d}-code", "context_length": 8192}]}
    assert len(lab.providers) == REMOTE + LOCAL
    big = lab.commit("200 providers")
    names = lab.rendered(big).public_models
    assert len(names) == 2 * REMOTE + LOCAL

    t0 = time.monotonic()
    code, out, err = lab.apply()
    wall = time.monotonic() - t0
    assert code == 0, out + err
    assert_survived(lab, good=big, cause=[f"{big[:12]} applied: ", f"recreated {lab.cname('gateway')}"])
    timing = (f"200 providers ({len(names)} public names): the pass took {lab.history()[-1]['duration_s']} s "
              f"({wall:.1f} s for the whole apply command), config {len(lab.rendered(big).config_text) / 1024:.0f} kB")
    print("\n" + timing)  # for information (pytest -s)
    note("timing", timing)
