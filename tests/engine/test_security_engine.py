"""Secrets and foreign containers on a real engine (issue 6, "Bad input and security").

A canary secret value lives only in the controller's environment. After apply, status,
history, plan --live, a committed change, a second apply and a briefly running controller,
the value is found in exactly one place: the environment of the container whose spec lists
it in `secret_env`. And a container without our labels on the same host is never touched.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from engine.lab import Lab, free_port
from engine.loop_lab import Controller

pytestmark = pytest.mark.docker

SECRET_NAME = "LAB_CANARY_TOKEN"


def _files_holding(root: Path, needle: bytes) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
            found.append(str(path))
    return found


def test_a_secret_reaches_only_its_containers_environment_and_foreign_containers_survive(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "canary-" + secrets.token_hex(16)
    needle = canary.encode()
    monkeypatch.setenv(SECRET_NAME, canary)
    lab.providers["alpha"]["container"]["secret_env"] = [SECRET_NAME]
    foreign = lab.run_foreign(f"{lab.name}-foreign", free_port())
    foreign_before = lab.engine.api.inspect_container(foreign)

    outputs: dict[str, str] = {}

    def record(what: str, result: tuple[int, str, str], want: int = 0) -> str:
        code, out, err = result
        outputs[what] = out + "\n" + err
        assert code == want, f"{what} exited {code}:\n{out}\n{err}"
        return out

    lab.commit("alpha receives a secret")
    record("apply 1", lab.apply())
    first_alpha = lab.ids()[lab.cname("alpha")]
    record("status", lab.cli("status", "--state-dir", str(lab.state), "--format", "json"))
    record("status text", lab.cli("status", "--state-dir", str(lab.state)))
    record("history", lab.cli("history", "--state-dir", str(lab.state), "--format", "json"))
    # a change to the container with the secret: it is recreated with the secret again
    lab.providers["alpha"]["container"]["env"] = {"SOME_SETTING": "2"}
    lab.commit("alpha: a new setting")
    record("plan --live", lab.cli("plan", "--live", "--repo", str(lab.repo.path), "--state-dir", str(lab.state)))
    record("plan --live json", lab.cli("plan", "--live", "--repo", str(lab.repo.path), "--state-dir",
                                       str(lab.state), "--format", "json"))
    record("apply 2", lab.apply())
    assert lab.ids()[lab.cname("alpha")] != first_alpha   # recreated, so the secret was passed twice
    record("history 2", lab.cli("history", "--state-dir", str(lab.state), "--format", "json"))

    # the unattended controller, briefly: its first pass, then what it serves
    with Controller(lab, env={SECRET_NAME: canary}) as ctl:
        ctl.wait_pass(1)
        served: dict[str, Any] = {}
        for path in ("/status", "/metrics", "/healthz"):
            code, text = ctl.request(path)
            assert code == 200, (path, text)
            served[path] = text
        assert ctl.terminate() == 0
    run_log = ctl.log_path.read_text()

    leaks = {what: text for what, text in {**outputs, **served, "run log": run_log}.items() if canary in text}
    assert not leaks, f"the secret value leaked into: {sorted(leaks)}"
    assert _files_holding(lab.state, needle) == [], "the secret value is written in the state dir"
    assert _files_holding(lab.repo.path, needle) == [], "the secret value is in the spec repo"

    ours = lab.containers()
    assert set(ours) == {lab.cname("alpha"), lab.cname("beta"), lab.cname("gateway")}, sorted(ours)
    for name, info in ours.items():
        labels = json.dumps(info["Config"]["Labels"])
        assert canary not in labels, f"{name}: the secret value is in a label"
        env = info["Config"]["Env"] or []
        holding = [e for e in env if canary in e]
        if name == lab.cname("alpha"):
            assert holding == [f"{SECRET_NAME}={canary}"], f"{name}: the secret did not arrive"
        else:
            assert holding == [], f"{name} received a secret it does not list: {holding}"
        # nothing else about the container carries it either (command, mounts, host config)
        rest = json.dumps({k: v for k, v in info.items() if k != "Config"}) + json.dumps(
            {k: v for k, v in info["Config"].items() if k != "Env"})
        assert canary not in rest, f"{name}: the secret value is in its inspect outside Config.Env"

    # the foreign container: same id, still running, never restarted, labels unchanged
    after = lab.engine.api.inspect_container(foreign)
    assert after["Id"] == foreign_before["Id"]
    assert after["State"]["Running"] and after["RestartCount"] == foreign_before["RestartCount"]
    assert after["State"]["StartedAt"] == foreign_before["State"]["StartedAt"]
    assert after["Config"]["Labels"] == foreign_before["Config"]["Labels"]
    assert "llm-gitops.stack" not in (after["Config"]["Labels"] or {})   # (the image's own build label aside)
    assert all(canary not in e for e in after["Config"]["Env"] or [])
