"""Fixtures of the fault-injection suite: the engine; a `lab` (a `FaultLab`) whose teardown
removes, by id, what the test's stack and state dir made, and then fails the test if
anything of them is still there; and a `private_engine`, a second dockerd to restart."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.lab import STUB, _unavailable, engine  # noqa: F401 - pytest finds fixtures by name here
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
