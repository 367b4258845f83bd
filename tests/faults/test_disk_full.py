"""The state dir's disk fills up while a pass writes the gateway's new config.

The state dir is a small tmpfs of its own (mounted by the test, unmounted at teardown). A good
stack is applied; then a commit adds 500 names to the gateway (a remote provider's models:
no container, a config of about 115 kB) and the tmpfs is filled with a file until only a
little room is left: enough for the record and a history line, not for the new config. The
pass must fail before anything is stopped, say that the disk is full and which file it could
not write, leave no half-written file, and the old config keeps being served. Once the filler
is removed, the next pass applies the commit.

A second case fills the disk completely: then even the record cannot be written, and the
pass must stop at that, naming record.json and the full disk, with nothing touched.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.lab import _unavailable
from faults.survival import FaultLab, assert_survived, note, nothing_leaked, serves

pytestmark = pytest.mark.docker

SIZE = "2m"


@pytest.fixture
def small_disk(lab: FaultLab) -> Iterator[Path]:
    """lab.state on a tmpfs of SIZE (the mount is removed at teardown, after the lab's containers)."""
    lab.state.mkdir(mode=0o700)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(lab.state)],
                             capture_output=True, text=True, timeout=30)
    if mounted.returncode != 0:
        _unavailable(f"cannot mount a tmpfs here (root needed): {mounted.stderr.strip()}")
    try:
        yield lab.state
    finally:
        lab.cleanup()  # the gateway bind-mounts a directory of it: remove the containers first
        if subprocess.run(["umount", str(lab.state)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(lab.state)], capture_output=True, timeout=30)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave: int) -> Path:
    """A file that takes all but `leave` bytes of the disk under `path`."""
    filler = path / "filler"
    with filler.open("wb") as f:
        f.write(b"\0" * max(free_bytes(path) - leave, 0))
    assert free_bytes(path) <= leave
    return filler


def many_names(lab: FaultLab, n: int = 500) -> None:
    lab.providers["remote"] = {"type": "openai_compatible", "status": "active", "base_url": "http://127.0.0.1:9/v1",
                               "models": [{"name": f"remote-model-{i:03d}", "context_length": 8192} for i in range(n)]}


def test_a_full_disk_while_the_config_is_written_changes_nothing_and_the_next_pass_applies(
        lab: FaultLab, small_disk: Path) -> None:
    del lab.providers["beta"]
    good = lab.serve()
    ids = lab.ids()
    many_names(lab)
    new = lab.commit("500 remote models")
    config_size = len(lab.rendered(new).config_text)
    room = 40 * 1024   # the record, its temp copy and a history line fit; the config does not
    assert config_size > 2 * room
    filler = fill(small_disk, room)

    code, out, err = lab.apply()
    assert code == 1, out + err
    note("llm-gitops apply", out)
    staged = small_disk / "gateway" / ".staging" / "config.yaml"
    cause = f"cannot write {staged}: No space left on device"
    assert f"{new[:12]}: failed: state dir {small_disk}: {cause}" in out, out + err
    assert "free disk space or fix permissions; the live config was not touched" in out
    assert f"Nothing had been changed: {good[:12]} keeps serving" in out
    assert lab.ids() == ids and new not in lab.status()["quarantined"]  # the host's fault, tried again
    assert_survived(lab, good=good, cause=cause)

    filler.unlink()
    code, out, err = lab.apply()
    assert code == 0, out + err
    assert_survived(lab, good=new, cause=f"{new[:12]} applied: recreated {lab.cname('gateway')}")


def test_a_disk_too_full_for_the_record_stops_the_pass_before_anything_runs(
        lab: FaultLab, small_disk: Path) -> None:
    del lab.providers["beta"]
    good = lab.serve()
    ids = lab.ids()
    many_names(lab)
    new = lab.commit("500 remote models")
    filler = fill(small_disk, 0)

    code, out, err = lab.apply()
    assert code == 1, out + err
    note("llm-gitops apply (stderr)", err)
    assert f"state dir {small_disk}: cannot write record.json: No space left on device" in err, out + err
    assert "check the disk (full?)" in err and "unexpected" not in err
    assert lab.ids() == ids
    want = lab.rendered(good)
    serves(lab, good, want)
    nothing_leaked(lab, want)
    assert (small_disk / "gateway" / "config.yaml").read_bytes() == want.config_text.encode()
    assert not list(small_disk.rglob(".*.tmp")) and not (small_disk / "gateway" / ".staging" / "config.yaml").exists()

    filler.unlink()
    code, out, err = lab.apply()
    assert code == 0, out + err
    assert_survived(lab, good=new, cause=f"{new[:12]} applied: recreated {lab.cname('gateway')}")
