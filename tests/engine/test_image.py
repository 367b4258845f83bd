"""The controller's own image (manifests/docker/Dockerfile), built and run the way the README's
install says: host network, the Docker socket, the state dir mounted at the same path. It
converges a Lab stack, and `docker stop` (SIGTERM) ends it with status 0."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT
from engine.lab import Lab, _unavailable, wait_for

pytestmark = pytest.mark.docker
IMAGE = "llm-gitops-test/controller:dev"


@pytest.fixture(scope="module")
def controller_image(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Built from a copy of what the Dockerfile needs, with this machine's CA bundle (its
    package index sits behind a TLS-intercepting proxy), on the locally built Debian base."""
    ctx = tmp_path_factory.mktemp("image")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, ctx / name)
    shutil.copytree(ROOT / "controller", ctx / "controller", ignore=shutil.ignore_patterns("__pycache__"))
    ca = Path("/etc/ssl/certs/ca-certificates.crt")
    if ca.exists():
        shutil.copy(ca, ctx / "build-ca.crt")
    built = subprocess.run(["docker", "build", "--network", "host", "-q", "-f", str(ROOT / "manifests/docker/Dockerfile"),
                            "--build-arg", "BASE=llm-gitops-test/debian:bookworm", "-t", IMAGE, str(ctx)],
                           capture_output=True, text=True, timeout=900)
    if built.returncode != 0:
        _unavailable(f"the controller image did not build: {built.stderr[-2000:]}")
    yield IMAGE


def test_the_controller_image_converges_a_stack_and_stops_cleanly(lab: Lab, controller_image: str) -> None:
    commit = lab.commit()
    lab.state.mkdir()
    top = str(lab.state.parent)   # repo and state dir, at the same paths as on the host
    container = lab.engine.api.create_container(
        controller_image, command=["run", "--repo", str(lab.repo.path), "--state-dir", str(lab.state),
                                   "--http-port", "0", "--poll-interval-s", "2"],
        environment={"LITELLM_MASTER_KEY": lab.master_key, "LLM_GITOPS_NO_GPU_REQUESTS": "1"},
        host_config=lab.engine.api.create_host_config(
            network_mode="host", binds={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
                                        top: {"bind": top, "mode": "rw"}}))
    cid = container["Id"]
    try:
        lab.engine.api.start(cid)

        def applied() -> bool:
            state = lab.engine.api.inspect_container(cid)["State"]
            if not state["Running"]:
                raise AssertionError(lab.engine.api.logs(cid).decode()[-3000:])
            with contextlib.suppress(OSError, ValueError):
                return json.loads((lab.state / "record.json").read_text()).get("last_applied") == commit
            return False

        wait_for(applied, timeout=120)
        assert set(lab.running()) == {lab.cname(k) for k in ("alpha", "beta", "gateway")}
        logs = lab.engine.api.logs(cid).decode()
        assert '"event": "pass_end"' in logs  # JSON lines: no terminal in a container
        lab.engine.api.stop(cid, timeout=60)
        state = lab.engine.api.inspect_container(cid)["State"]
        assert state["ExitCode"] == 0, lab.engine.api.logs(cid).decode()[-2000:]
        assert '"event": "lock_released"' in lab.engine.api.logs(cid).decode()
        # the stack keeps running without its controller, and did not include the controller itself
        assert set(lab.running()) == {lab.cname(k) for k in ("alpha", "beta", "gateway")}
    finally:
        with contextlib.suppress(Exception):
            lab.engine.api.remove_container(cid, force=True)
