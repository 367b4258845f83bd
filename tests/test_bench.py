"""`make bench` compares llm-gitops with docker-compose on "the same stack": these pure tests
keep the hand-written compose file (scripts/bench_stack.py) and what our renderer makes of the
spec from the same table describing the same containers, so the comparison cannot drift apart.

No Docker, no timing: speed is measured by `make bench`, never asserted here.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
import yaml

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import bench_stack  # noqa: E402

from controller.render import ContainerSpec, render  # noqa: E402
from controller.spec import load_files  # noqa: E402

PORTS = list(range(21001, 21011))


def _rendered(stack: bench_stack.Stack) -> dict[str, ContainerSpec]:
    loaded = load_files(bench_stack.spec_files(stack))
    assert not loaded.problems, loaded.problems
    return {c.key: c for c in render(loaded.require()).containers}


def _compose(stack: bench_stack.Stack) -> dict[str, dict[str, Any]]:
    services = yaml.safe_load(bench_stack.compose_text(stack, "/srv/bench/gateway"))["services"]
    assert isinstance(services, dict)
    return services


def _health_url(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python3", "-c"]
    return str(test[-1])


def _environment(service: dict[str, Any]) -> tuple[dict[str, str], set[str]]:
    """(values, names passed through from the caller's environment)."""
    env = service.get("environment", {})
    if isinstance(env, list):
        return ({k: v for k, _, v in (e.partition("=") for e in env if "=" in e)},
                {e for e in env if "=" not in e})
    return dict(env), set()


STACKS = {
    "as made": bench_stack.make_stack("bench", PORTS),
    "args changed": bench_stack.make_stack("bench", PORTS).with_args("p3", ("--model", "bench-m3", "--seed", "7")),
    "env changed": bench_stack.make_stack("bench", PORTS).with_env("p1", {"STUB_REPLY": "r-1"}),
    "alias added": bench_stack.make_stack("bench", PORTS).with_alias("bench-extra", "p4"),
}


@pytest.mark.parametrize("stack", STACKS.values(), ids=list(STACKS))
def test_the_compose_file_runs_the_containers_the_spec_renders(stack: bench_stack.Stack) -> None:
    rendered, services = _rendered(stack), _compose(stack)
    assert len(rendered) == 10
    assert set(services) == set(rendered)
    for key, spec in rendered.items():
        service = services[key]
        assert service["image"] == spec.image, key
        assert tuple(service.get("command", ())) == spec.command, key
        values, passed = _environment(service)
        assert values == spec.env, key
        assert passed == set(spec.secret_env), key
        assert service["network_mode"] == "host", key
        assert _health_url(service) == spec.health.url, key
        assert f"127.0.0.1:{spec.port}" in spec.health.url
        assert service.get("privileged", False) == spec.privileged
        mounts = [f"{m.target}:ro" if m.read_only else m.target for m in spec.mounts]
        assert [v.split(":", 1)[1] for v in service.get("volumes", [])] == mounts, key


def test_every_container_has_its_own_port_and_a_change_touches_one_service() -> None:
    base = STACKS["as made"]
    ports = [int(s.health.url.rsplit(":", 1)[1].split("/")[0]) for s in _rendered(base).values()]
    assert sorted(ports) == PORTS
    before, after = _compose(base), _compose(STACKS["args changed"])
    assert [k for k in before if before[k] != after[k]] == ["p3"]
    # an alias changes the gateway's config only: the compose file itself stays the same
    assert _compose(STACKS["alias added"]) == before
    old, new = _rendered(base), _rendered(STACKS["alias added"])
    assert [k for k in old if old[k].spec_hash != new[k].spec_hash] == ["gateway"]


def test_the_benchmarks_doc_shows_its_plot_and_how_to_rerun_it() -> None:
    doc = (ROOT / "docs" / "BENCHMARKS.md").read_text()
    assert "](bench-core.png)" in doc
    assert (ROOT / "docs" / "bench-core.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for needle in ("make bench", "scripts/bench_compose.py", "scripts/bench_loop.py", "scripts/bench_core.py",
                   "docker-compose 1.29.2", "no GPU"):
        assert needle in doc, needle
    assert "(docs/BENCHMARKS.md)" in (ROOT / "README.md").read_text()
