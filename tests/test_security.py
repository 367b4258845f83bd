"""Bad input and security, without an engine (issue 6).

Policy: each dangerous container setting is refused by `llm-gitops validate` with an error
that names file:line:col, says what is wrong and what to do instead, so nothing would run.
Webhook: the real HTTP endpoint on 127.0.0.1 answers a missing, wrong or foreign-secret
signature with 401 and never pokes the loop; only a correct one does, once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT, read_spec_dir
from controller.adapters import http
from controller.cli import main

DEMO = ROOT / "config" / "demo"
VICTIM = "vllm-tiny"   # a provider of the demo stack that has a container


def _spec_dir(tmp_path: Path, change: dict[str, Any]) -> tuple[Path, int]:
    """The demo spec with `change` merged into VICTIM's container, written with a marker so the
    line of the first changed key is known: (dir, 1-based line of that key)."""
    files = read_spec_dir(DEMO)
    providers = yaml.safe_load(files["providers.yaml"])
    container = providers["providers"][VICTIM]["container"]
    container.update(change)
    text = yaml.safe_dump(providers, sort_keys=False)
    key = next(iter(change))
    lines = text.splitlines()
    line = next(i for i, ln in enumerate(lines, 1) if ln.strip().startswith(f"{key}:"))
    if isinstance(change[key], list):
        line += 1   # a list item's own line
    files["providers.yaml"] = text
    d = tmp_path / "spec"
    d.mkdir()
    for name, body in files.items():
        (d / name).write_text(body)
    return d, line


POLICY_CASES = {
    "privileged": ({"privileged": True}, "container.privileged: privileged containers are refused by policy",
                   "remove `privileged: true`"),
    "docker-socket": ({"volumes": ["/var/run/docker.sock:/var/run/docker.sock"]},
                      "container.volumes[0]: mounting `/var/run/docker.sock` is refused: it hands the container the host",
                      "mount only the model or cache directories the server needs"),
    "docker-socket-via-run": ({"volumes": ["/run/docker.sock:/var/run/docker.sock:ro"]},
                              "mounting `/run/docker.sock` is refused", "mount only the model or cache directories"),
    "root": ({"volumes": ["/:/host:ro"]}, "container.volumes[0]: mounting `/` is refused",
             "mount only the model or cache directories the server needs"),
    "root-dotdot": ({"volumes": ["/srv/../:/host"]}, "mounting `/` is refused", "mount only the model"),
    "outside-roots": ({"volumes": ["/etc:/host-etc:ro"]},
                      "container.volumes[0]: host path `/etc` is outside the allowed mount roots (/srv, /models, /data)",
                      "add one to policy.allowed_mount_roots in stack.yaml"),
    "escape-roots-dotdot": ({"volumes": ["/srv/../etc:/x"]}, "host path `/etc` is outside the allowed mount roots",
                            "policy.allowed_mount_roots"),
    "image": ({"image": "docker.io/evil/miner:latest"},
              "container.image: image `docker.io/evil/miner:latest` is not allowed by policy",
              "allowed images: llm-gitops-test/"),
    "image-lookalike": ({"image": "llm-gitops-test-evil/stub:1"}, "is not allowed by policy", "allowed images:"),
}


@pytest.mark.parametrize("case", sorted(POLICY_CASES))
def test_policy_refuses_dangerous_containers_with_file_line_and_a_fix(
        case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    change, what, todo = POLICY_CASES[case]
    spec, line = _spec_dir(tmp_path, change)
    assert main(["validate", str(spec)]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    errors = [ln for ln in text.splitlines() if ": error: " in ln]
    assert len(errors) == 1, text   # exactly this problem, nothing else
    where, _, message = errors[0].partition(": error: ")
    assert where.startswith(f"{spec / 'providers.yaml'}:{line}:"), text
    assert message.startswith(f"{VICTIM}.") and what in message, text
    hint = text.splitlines()[text.splitlines().index(errors[0]) + 1]
    assert hint.strip().startswith("hint:") and todo in hint, text
    assert f"{spec}: invalid; nothing would be applied" in text


def test_the_unchanged_demo_spec_passes_policy(capsys: pytest.CaptureFixture[str]) -> None:
    """The control: the cases above fail because of their one change, not the base."""
    assert main(["validate", str(DEMO)]) == 0
    assert "0 error(s)" in capsys.readouterr().out


def test_policy_reports_every_refusal_at_once_and_render_outputs_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """All five together: every one reported (none hides another), and `render` (what apply
    would run) prints nothing to run."""
    spec, _ = _spec_dir(tmp_path, {"privileged": True, "image": "evil/miner:1",
                                   "volumes": ["/var/run/docker.sock:/s", "/:/h", "/etc:/e"]})
    assert main(["validate", str(spec)]) == 1
    text = "".join(capsys.readouterr())
    assert "5 error(s)" in text
    assert main(["render", str(spec)]) == 1
    out = capsys.readouterr()
    assert out.out == "" and "privileged containers are refused by policy" in out.err


# --------------------------------------------------------------------------- webhook

SECRET = b"the-right-secret-" + b"0" * 16


class FakeLoop:
    def __init__(self) -> None:
        self.pushes: list[str] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    def endpoints(self, secret: bytes | None = SECRET) -> http.Endpoints:
        return http.Endpoints(healthz=lambda: (200, {"ok": True}), status=dict, metrics=lambda: "",
                              push=self.pushes.append, secret=lambda: secret, branch="main",
                              emit=lambda event, **kw: self.events.append((event, kw)))


@pytest.fixture
def hook() -> Iterator[tuple[FakeLoop, int]]:
    fake = FakeLoop()
    server = http.serve(fake.endpoints(), 0)
    try:
        yield fake, server.server_port
    finally:
        server.shutdown()
        server.server_close()


def _post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/hooks/git", data=body, method="POST",
                                 headers={"Content-Type": "application/json", "X-GitHub-Event": "push", **headers})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


PUSH = json.dumps({"ref": "refs/heads/main", "after": "a" * 40}).encode()


@pytest.mark.parametrize("case", ["missing", "empty", "wrong", "not-sha256", "other-secret-replay", "body-tampered"])
def test_webhook_refuses_unsigned_or_wrongly_signed_pushes(case: str, hook: tuple[FakeLoop, int]) -> None:
    fake, port = hook
    body = PUSH
    headers = {
        "missing": {},
        "empty": {"X-Hub-Signature-256": ""},
        "wrong": {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        "not-sha256": {"X-Hub-Signature-256": "sha1=" + hmac.new(SECRET, body, hashlib.sha1).hexdigest()},
        # a body the real sender signed, replayed with a fresh signature made with another secret
        "other-secret-replay": {"X-Hub-Signature-256": _sign(b"an-attackers-secret", body)},
        "body-tampered": {"X-Hub-Signature-256": _sign(SECRET, body)},
    }[case]
    if case == "body-tampered":
        body = json.dumps({"ref": "refs/heads/main", "after": "b" * 40}).encode()
    code, answer = _post(port, body, headers)
    assert code == 401, answer
    assert "X-Hub-Signature-256" in answer["error"]
    assert fake.pushes == []
    assert [e for e, _ in fake.events] == ["webhook_refused"]


def test_webhook_accepts_a_correct_signature_and_pushes_once(hook: tuple[FakeLoop, int]) -> None:
    fake, port = hook
    code, answer = _post(port, PUSH, {"X-Hub-Signature-256": _sign(SECRET, PUSH)})
    assert (code, answer) == (202, {"accepted": True})
    assert fake.pushes == ["webhook"]
    # the refusals before or after a good one still push nothing more
    assert _post(port, PUSH, {"X-Hub-Signature-256": _sign(b"another", PUSH)})[0] == 401
    assert fake.pushes == ["webhook"]


def test_webhook_without_a_configured_secret_refuses_even_a_signed_push() -> None:
    fake = FakeLoop()
    server = http.serve(fake.endpoints(secret=None), 0)
    try:
        code, answer = _post(server.server_port, PUSH, {"X-Hub-Signature-256": _sign(b"", PUSH)})
    finally:
        server.shutdown()
        server.server_close()
    assert code == 403 and "webhook disabled" in answer["error"]
    assert fake.pushes == []
