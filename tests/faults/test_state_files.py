"""A corrupted state file: each file of the state dir cut off, emptied, or overwritten with
garbage (invalid UTF-8 included), as a failing disk or a careless hand leaves it.

Either the controller recovers by itself (a torn history line, a scribbled lock file,
loop.json, a damaged snapshot of the applied commit), or it refuses to act with one line
that names the file and says what to do (the record, the owner id, the secret key, the
suspend file); in both cases the running stack is never touched, and once the hint is
followed the next pass converges.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.lab import wait_for
from engine.loop_lab import Controller
from faults.survival import FaultLab, assert_survived, note, serves

pytestmark = pytest.mark.docker

GARBAGE = b"\xff\xfe\x00garbage \xc3\x28 not json {{{\n\x89PNG\r\n"

CORRUPT: dict[str, Callable[[Path], None]] = {
    "cut": lambda p: p.write_bytes(p.read_bytes()[: max(len(p.read_bytes()) // 2, 1)]),
    "emptied": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(GARBAGE),
}


def served(lab: FaultLab) -> str:
    """A small stack (alpha and the gateway), applied."""
    del lab.providers["beta"]
    return lab.serve()


def refused(lab: FaultLab, good: str, *needles: str) -> None:
    """`apply` refuses with an error that names the file and what to do (not an "unexpected
    error"); the stack is untouched."""
    ids = lab.ids()
    code, out, err = lab.apply()
    assert code == 1, out + err
    note("llm-gitops apply (stderr)", err)
    assert "llm-gitops: state dir " in err and "unexpected" not in err, err
    for needle in needles:
        assert needle in err, err
    assert lab.ids() == ids
    serves(lab, good, lab.rendered(good))


@pytest.mark.parametrize("how", sorted(CORRUPT))
def test_a_corrupt_record_is_named_and_moving_it_away_recovers(lab: FaultLab, how: str) -> None:
    good = served(lab)
    record = lab.state / "record.json"
    CORRUPT[how](record)
    hint = f"move {record} away to start from an empty record"
    refused(lab, good, "record.json is not a readable record", hint)
    code, _, err = lab.cli("status", "--state-dir", str(lab.state))
    assert code == 1 and "record.json is not a readable record" in err and hint in err
    record.rename(record.with_name("record.json.broken"))  # as the hint says
    code, out, err = lab.apply()
    assert code == 0 and f"{good[:12]}: applied: no container changed" in out, out + err
    assert_survived(lab, good=good, cause=f"{good[:12]} applied: no container changed")


@pytest.mark.parametrize("how", ["cut", "garbage"])
def test_a_damaged_history_is_read_around_and_appended_to(lab: FaultLab, how: str) -> None:
    served(lab)
    history = lab.state / "history.jsonl"
    whole = len(history.read_bytes().splitlines())
    CORRUPT[how](history)  # cut: the last line torn in half, as a crash mid-append would
    for command in ("history", "status"):
        code, out, err = lab.cli(command, "--state-dir", str(lab.state))
        assert code == 0, err
    lab.providers["alpha"]["container"]["args"] = ["--seed", "5"]
    new = lab.commit("alpha: new args")
    code, out, err = lab.apply()
    assert code == 0, out + err
    entries = lab.history()
    assert entries[-1]["commit"] == new and len(entries) == whole  # the torn line is skipped, the new one whole
    assert_survived(lab, good=new, cause=f"{new[:12]} applied: recreated {lab.cname('alpha')}")


def test_a_scribbled_lock_file_is_taken_over(lab: FaultLab) -> None:
    good = served(lab)
    (lab.state / "lock").write_bytes(GARBAGE * 50)
    code, _, err = lab.cli("status", "--state-dir", str(lab.state))
    assert code == 0 and "controller      not running\n" in _, err
    lab.providers["alpha"]["container"]["args"] = ["--seed", "5"]
    new = lab.commit("alpha: new args")
    assert lab.apply()[0] == 0
    assert (lab.state / "lock").read_text().startswith(f"pid {os.getpid()}, apply, since ")
    assert_survived(lab, good=new, cause=f"{new[:12]} applied")
    assert good != new


@pytest.mark.parametrize("how", ["emptied", "garbage"])
def test_a_damaged_owner_id_is_named_and_removing_it_recovers(lab: FaultLab, how: str) -> None:
    good = served(lab)
    owner = lab.state / "owner"
    CORRUPT[how](owner)
    lab.providers["alpha"]["container"]["args"] = ["--seed", "5"]  # a pass that creates a container
    new = lab.commit("alpha: new args")
    refused(lab, good, f"{owner} is damaged", "remove it")
    code, out, _ = lab.cli("status", "--state-dir", str(lab.state))
    assert code == 0 and f"state error     state dir {lab.state.resolve()}: {owner} is damaged" in out, out
    owner.unlink()
    code, out, err = lab.apply()
    assert code == 0, out + err
    assert_survived(lab, good=new, cause=f"{new[:12]} applied: recreated {lab.cname('alpha')}")


def test_a_damaged_secret_key_is_named_and_removing_it_recovers(lab: FaultLab) -> None:
    good = served(lab)
    key = lab.state / "secret.key"
    CORRUPT["cut"](key)
    refused(lab, good, f"{key} is damaged", "remove it")
    key.unlink()
    code, out, err = lab.apply()  # a new key: the gateway, which gets the master key, restarts once
    assert code == 0 and f"recreated {lab.cname('gateway')}" in out, out + err
    assert_survived(lab, good=good, cause=f"{good[:12]} applied: recreated {lab.cname('gateway')}")


def test_a_garbage_suspend_file_holds_changes_and_says_so(lab: FaultLab) -> None:
    good = served(lab)
    suspended = lab.state / "suspended"
    suspended.write_bytes(GARBAGE)
    lab.providers["alpha"]["container"]["args"] = ["--seed", "5"]
    new = lab.commit("alpha: new args")
    refused(lab, good, "suspended is unreadable", f"remove {suspended}")
    code, out, _ = lab.cli("status", "--state-dir", str(lab.state))
    assert code == 0 and "suspended       its file cannot be read" in out, out
    suspended.unlink()
    assert lab.apply()[0] == 0
    assert_survived(lab, good=new, cause=f"{new[:12]} applied: recreated {lab.cname('alpha')}")


def test_a_damaged_snapshot_of_the_applied_commit_still_goes_back(lab: FaultLab) -> None:
    good = served(lab)
    CORRUPT["garbage"](lab.state / "applied.json")
    lab.providers["alpha"]["container"].update(args=["--seed", "5"], env={"STUB_EXIT_AFTER": "0"})
    bad = lab.commit("alpha exits at start")
    code, out, err = lab.apply()  # going back renders the good commit from git instead
    assert code == 1 and f"Rolled back to {good[:12]}, which serves again" in out, out + err
    assert_survived(lab, good=good, cause=[f"quarantined     {bad[:12]}", "exited with status 3"])


def test_a_garbage_loop_json_under_a_running_loop_is_rewritten(lab: FaultLab) -> None:
    served(lab)
    with Controller(lab) as ctl:  # drift and poll every 600 s: nothing rewrites loop.json but a pass
        ctl.wait_pass(1)
        loop_json = lab.state / "loop.json"
        loop_json.write_bytes(GARBAGE)
        code, out, err = lab.cli("status", "--state-dir", str(lab.state))
        assert code == 0, err
        note("llm-gitops status", out)
        assert f"controller      running (pid {ctl.proc.pid}" in out and f"{loop_json}" in out, out
        lab.providers["alpha"]["container"]["args"] = ["--seed", "5"]
        new = lab.commit("alpha: new args")
        assert ctl.wait_pass(1, commit=new[:12])["outcome"] == "applied"
        wait_for(lambda: loop_json.read_bytes() != GARBAGE, timeout=30)  # the pass rewrote it
        assert_survived(lab, good=new, cause=[f"controller      running (pid {ctl.proc.pid}, idle",
                                              f"{new[:12]} applied: recreated {lab.cname('alpha')}"], ctl=ctl,
                        loop_cause=f"applied: recreated {lab.cname('alpha')}")
        assert ctl.terminate() == 0
