"""Fixtures of the fault-injection suite: the engine; a `lab` (a `FaultLab`) whose teardown
removes, by id, what the test's stack and state dir made, and then fails the test if
anything of them is still there; a `private_engine`, a second dockerd to restart; and a
foreign container that runs beside every case of the suite and must come out of each one
untouched (issue 6: "containers without our labels survive every test in this suite")."""

from __future__ import annotations

import os
import secrets
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.lab import STUB, _unavailable, engine, free_port  # noqa: F401 - pytest finds fixtures by name here
from faults.private_engine import PrivateEngine
from faults.survival import FaultLab


def remove_owned(lab: FaultLab) -> None:
    for info in lab.owned().values():
        try:
            lab.engine.api.remove_container(info["Id"], force=True)
        except Exception:  # noqa: BLE001 - gone meanwhile
            pass


@pytest.fixture
def lab(engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultLab]:  # noqa: F811
    the_lab = FaultLab(engine, tmp_path, monkeypatch)
    try:
        yield the_lab
    finally:
        the_lab.cleanup()
        remove_owned(the_lab)
        left = sorted(the_lab.owned())
        assert left == [], f"containers of the test's stack left after teardown: {left}"


@pytest.fixture
def private_engine(engine: Any) -> Iterator[PrivateEngine]:  # noqa: F811
    """A second dockerd of this test's own, with the stub image (see faults.private_engine)."""
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        _unavailable("a private Docker daemon needs root and dockerd")
    private = PrivateEngine()
    try:
        try:
            private.start()
        except RuntimeError as exc:
            _unavailable(f"a private Docker daemon does not start here: {exc}")
        private.load(STUB)
        yield private
    finally:
        private.stop()


# --------------------------------------------------------------------------- the foreign sentinel

def _fingerprint(client: Any, cid: str) -> dict[str, Any]:
    """What any touch of ours would change: a restart, a recreate, a relabel, a stop."""
    info = client.api.inspect_container(cid)  # NotFound if something removed it
    state = info["State"]
    return {"Id": info["Id"], "Name": info["Name"], "Image": info["Image"], "Cmd": info["Config"]["Cmd"],
            "Labels": info["Config"]["Labels"], "Running": state["Running"], "StartedAt": state["StartedAt"],
            "RestartCount": info["RestartCount"], "RestartPolicy": info["HostConfig"]["RestartPolicy"]}


@pytest.fixture(scope="package")
def foreign(engine: Any) -> Iterator[dict[str, Any]]:  # noqa: F811
    """A stub container without our labels, on the main engine for the whole suite."""
    port = free_port()
    created = engine.api.create_container(
        STUB, command=["--host", "127.0.0.1", "--port", str(port)], name=f"foreign-{secrets.token_hex(4)}",
        labels={"purpose": "a container llm-gitops does not own (tests/faults sentinel)"},
        host_config=engine.api.create_host_config(network_mode="host"))
    cid = str(created["Id"])
    try:
        engine.api.start(cid)
        yield {"id": cid, "port": port, "before": _fingerprint(engine, cid)}
    finally:
        engine.api.remove_container(cid, force=True)


@pytest.fixture(autouse=True)
def foreign_untouched(engine: Any, foreign: dict[str, Any]) -> Iterator[None]:  # noqa: F811
    """After each case: the foreign container is the same container, never restarted or
    relabelled, and still answers on its port."""
    yield
    assert _fingerprint(engine, foreign["id"]) == foreign["before"], "the fault case touched a foreign container"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1, never a proxy
    with opener.open(f"http://127.0.0.1:{foreign['port']}/health", timeout=5) as answer:
        assert answer.status == 200
