"""Fixtures of the fault-injection suite: the engine, and a `lab` (a `FaultLab`) whose
teardown removes, by id, what the test's stack and state dir made, and then fails the test
if anything of them is still there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.lab import engine  # noqa: F401 - pytest finds fixtures by name here
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
