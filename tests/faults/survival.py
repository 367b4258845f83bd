"""The one outcome every fault case ends with (issue 6, "Fault injection"), checked in one place.

`assert_survived(lab, good=..., cause=...)` holds when, after a fault:

1. the stack of commit `good` serves: the gateway lists exactly that commit's public names on
   /v1/models and answers a chat completion for each, and every provider container answers
   a chat completion for each of its models on its own port (real HTTP on 127.0.0.1);
2. nothing leaked: the containers this stack and this state dir own are exactly the ones
   `good` renders, each running with the restart policy of a healthy container and the spec
   hash the record says was applied; no container set aside, no canary;
3. the state dir is consistent: the record, the snapshot of the applied commit, the history
   and loop.json parse; the live gateway config is byte for byte what `good` renders; no temp
   file and no staged config is left over; nobody holds the lock unless a loop runs;
4. `llm-gitops status` (and the loop's /status, when one runs) names the cause.

`FaultLab` is the engine tests' `Lab` that remembers the files of every commit it made, so
that what a commit renders is known even after a force-push dropped it from git.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from controller.adapters.probe import NetProber
from controller.adapters.state import lock_holder
from controller.observed import ASIDE
from controller.record import Record
from controller.render import Desired, render
from controller.render.litellm import public_names
from controller.spec import load_files
from engine.lab import Lab, ask, wait_for
from engine.loop_lab import Controller

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 only, never a proxy


class FaultLab(Lab):
    """A Lab that keeps the spec files of each commit (commit -> files)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.specs: dict[str, dict[str, str]] = {}

    def commit(self, message: str = "change") -> str:
        sha = super().commit(message)
        self.specs[sha] = self.files()
        return sha

    def serve(self, message: str = "good") -> str:
        """Commit and apply the known good stack a case starts from. Without the canary: this
        pass is not under test, and a second gateway boot costs every case a second or two."""
        sha = self.commit(message)
        code, out, err = self.apply("--no-canary")
        assert code == 0 and f"{sha[:12]}: applied" in out, out + err
        return sha

    def rendered(self, commit: str) -> Desired:
        loaded = load_files(self.specs[commit])
        assert loaded.spec is not None and not loaded.errors, [p.format() for p in loaded.errors]
        return render(loaded.spec)

    def models_of(self, commit: str) -> dict[str, list[str]]:
        """provider name -> the model names it serves, at `commit`."""
        providers = yaml.safe_load(self.specs[commit]["providers.yaml"])["providers"]
        return {name: [m["name"] if isinstance(m, dict) else m for m in p.get("models", [])]
                for name, p in providers.items()}

    def owned(self) -> dict[str, dict[str, Any]]:
        """name -> inspect of every container of this stack or made from this state dir."""
        found = {c["Id"] for c in self.engine.api.containers(all=True, filters={"label": f"llm-gitops.stack={self.name}"})}
        found |= {c["Id"] for c in self.engine.api.containers(
            all=True, filters={"label": f"llm-gitops.state-dir={self.state.resolve()}"})}
        out = {}
        for cid in found:
            with contextlib.suppress(Exception):  # removed meanwhile
                info = self.engine.api.inspect_container(cid)
                out[info["Name"].lstrip("/")] = info
        return out


def assert_survived(lab: FaultLab, *, good: str, cause: str | Sequence[str], ctl: Controller | None = None,
                    loop_cause: str | Sequence[str] | None = None) -> None:
    """`cause`: what `llm-gitops status` must say (its text); `ctl`: the loop that runs on the
    lab's state dir, if one does (its pass in progress, a drift repair or a retry, is waited for
    first), whose /status must say `loop_cause` (default: `cause`)."""
    if ctl is not None:
        wait_for(lambda: _idle(ctl.status()["controller"]), timeout=60)
    want = lab.rendered(good)
    serves(lab, good, want)
    nothing_leaked(lab, want)
    state_is_consistent(lab, good, want, loop=ctl)
    names_the_cause(lab, _listed(cause), ctl, _listed(cause if loop_cause is None else loop_cause))


def _listed(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _idle(loop: dict[str, Any]) -> bool:
    return loop["state"] in ("idle", "backoff", "suspended") and loop["passing"] is None


def note(what: str, text: str) -> None:
    """With FAULTS_TRANSCRIPT=FILE, append what a command said to FILE: docs/RELIABILITY.md
    quotes these, from a real run (`status` at the end of every case, and the errors)."""
    transcript = os.environ.get("FAULTS_TRANSCRIPT")
    if transcript:
        with open(transcript, "a") as f:
            f.write(f"### {os.environ.get('PYTEST_CURRENT_TEST', '?')}: {what}\n```\n{text.rstrip()}\n```\n\n")


# --------------------------------------------------------------------------- 1. serving


def _get_json(url: str, key: str | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with OPENER.open(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def _chat(port: int, model: str) -> tuple[int, str]:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "still there?"}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with OPENER.open(req, timeout=10) as resp:
            return resp.status, str(json.loads(resp.read())["choices"][0]["message"]["content"])
    except (urllib.error.URLError, OSError) as exc:
        return 0, f"{type(exc).__name__}: {exc}"


def serves(lab: FaultLab, good: str, want: Desired) -> None:
    gateway_port = lab.ports["gateway"]
    names = public_names(want.litellm_config)
    code, body = _get_json(f"http://127.0.0.1:{gateway_port}/v1/models", lab.master_key)
    assert code == 200, f"the gateway's /v1/models answered {code}: {body}"
    assert sorted(m["id"] for m in body["data"]) == names, "the gateway does not list the good commit's names"
    for name in names:
        code, reply = ask(lab, name)
        assert code == 200, f"a chat completion for {name} through the gateway answered {code}: {reply}"
        assert reply["choices"][0]["message"]["content"] == f"stub {name} on 127.0.0.1:{gateway_port}", reply
    models = lab.models_of(good)
    prober = NetProber()
    for spec in want.containers:
        ok, seen = prober.healthy(spec.health)
        assert ok, f"{spec.name} is not healthy at {spec.health.url}: {seen}"
        if spec.component != "provider":
            continue
        assert spec.provider is not None
        for model in models[spec.provider]:
            code, text = _chat(spec.port, model)
            assert (code, text) == (200, f"stub {model} on 127.0.0.1:{spec.port}"), \
                f"{spec.name} on port {spec.port} does not serve {model}: {code} {text}"


# --------------------------------------------------------------------------- 2. no leaks


def nothing_leaked(lab: FaultLab, want: Desired) -> None:
    owned = lab.owned()
    assert sorted(owned) == sorted(c.name for c in want.containers), \
        f"containers left or missing: {sorted(owned)} (want {sorted(c.name for c in want.containers)})"
    rec = Record.from_dict(json.loads((lab.state / "record.json").read_text()))
    for name, info in owned.items():
        labels = info["Config"]["Labels"]
        assert ASIDE not in name and labels.get("llm-gitops.component") != "canary", name
        assert info["State"]["Running"] and info["State"]["Status"] == "running", (name, info["State"])
        assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped", \
            f"{name} still has restart policy {info['HostConfig']['RestartPolicy']['Name']!r} (never proven healthy?)"
        assert labels["llm-gitops.spec-hash"] == rec.applied_hashes.get(name), f"{name} runs another spec"
        assert labels.get("llm-gitops.state-dir") == str(lab.state.resolve()), f"{name} lacks its state-dir label"


# --------------------------------------------------------------------------- 3. the state dir


def _leftovers(state: Path) -> list[str]:
    """Temp files of atomic writes, and a staged config nobody will swap in."""
    out = [str(p.relative_to(state)) for p in state.rglob(".*.tmp")]
    staged = state / "gateway" / ".staging" / "config.yaml"
    if staged.exists():
        out.append(str(staged.relative_to(state)))
    return out


def state_is_consistent(lab: FaultLab, good: str, want: Desired, *, loop: Controller | None) -> None:
    state = lab.state
    rec = Record.from_dict(json.loads((state / "record.json").read_text()))
    assert (rec.last_applied, rec.last_good) == (good, good), (rec.last_applied, rec.last_good)
    assert rec.inflight is None, f"the record still says a pass on {rec.inflight} is unfinished"
    assert rec.applied_config_digest == want.config_digest and rec.applied_stack == want.stack
    snapshot = json.loads((state / "applied.json").read_text())
    assert snapshot["commit"] == good and snapshot["desired"]["config_digest"] == want.config_digest
    live = state / "gateway" / "config.yaml"
    assert live.read_bytes() == want.config_text.encode(), "the live gateway config is not what the good commit renders"
    assert live.stat().st_mode & 0o777 == 0o600
    lines = (state / "history.jsonl").read_bytes().splitlines()
    assert lines, "no history"
    last = json.loads(lines[-1])  # the last line is whole: every pass appends one line, fsynced
    assert {"pass", "commit", "outcome", "message", "started"} <= set(last)
    code, out, err = lab.cli("history", "--state-dir", str(state), "--format", "json")
    assert code == 0, err
    assert all(isinstance(e, dict) and "outcome" in e for e in json.loads(out))
    if (state / "loop.json").exists():
        assert isinstance(json.loads((state / "loop.json").read_text()), dict)
    assert _leftovers(state) == [], f"left in the state dir: {_leftovers(state)}"
    holder = lock_holder(state)
    if loop is None:
        assert holder is None, f"the lock is still held: {holder}"
    else:
        assert holder is not None and f"pid {loop.proc.pid}, run," in holder, holder


# --------------------------------------------------------------------------- 4. the cause


def names_the_cause(lab: FaultLab, causes: list[str], ctl: Controller | None, loop_causes: list[str]) -> None:
    code, text, err = lab.cli("status", "--state-dir", str(lab.state))
    assert code == 0, err
    note("llm-gitops status", text)
    body = lab.status()
    assert body["engine"] == "ok" and body["drift"] == [], (body["engine"], body["drift"])
    assert all(c["health"] == "ok" for c in body["containers"]), body["containers"]
    for cause in causes:
        assert cause in text, f"`llm-gitops status` does not name {cause!r}:\n{text}"
    if ctl is not None:
        shown = json.dumps(ctl.status())
        for cause in loop_causes:
            assert cause in shown, f"/status does not name {cause!r}: {shown[:3000]}"
