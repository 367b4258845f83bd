"""Real-engine helpers: a Docker engine, the locally built images, and `Lab`, a stack of
stub containers on free 127.0.0.1 ports driven through the real CLI and a real git repo.

Without an engine these tests skip on a laptop; with CI set (as .ci/run does) a missing
engine or image fails the run instead. Every container a test starts is removed by id at
teardown, found by the test's own unique stack label.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import GitRepo

STUB = "llm-gitops-test/stub:1"   # also stands in for the gateway: lists its --config's names on /v1/models
LITELLM = "llm-gitops-test/litellm:1.108.7"
REDIS = "llm-gitops-test/redis:1"


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why}: CI must run the real-engine tests (make engine images)", pytrace=False)
    pytest.skip(f"{why} (run `make engine images` to run the real-engine tests)")


@pytest.fixture(scope="session")
def engine() -> Any:
    try:
        import docker
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine here"
        _unavailable(f"no Docker engine answers ({type(exc).__name__})")
    for image in (STUB, LITELLM, REDIS):
        try:
            client.images.get(image)
        except Exception:  # noqa: BLE001
            _unavailable(f"image {image} is missing")
    return client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stub_provider(port: int, model: str, *, type_: str = "vllm", env: dict[str, str] | None = None,
                  args: list[str] | None = None, timeout: int = 20, image: str = STUB,
                  gpus: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"image": image, "startup_timeout_s": timeout}
    if args:
        container["args"] = args
    if env:
        container["env"] = env
    if gpus is not None:
        container["gpus"] = gpus
    container.update(extra.pop("container", {}))
    return {"type": type_, "status": "active", "base_url": f"http://127.0.0.1:{port}",
            "container": container, "models": [{"name": model, "context_length": 2048}], **extra}


class Lab:
    """One test's stack: spec data, a git repo, a state dir, and the real CLI."""

    def __init__(self, engine: Any, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.engine = engine
        self.name = "t" + secrets.token_hex(4)
        (tmp / "repo").mkdir()
        self.repo = GitRepo(tmp / "repo")
        self.state = tmp / "state"
        self.master_key = "sk-test-" + secrets.token_hex(12)
        monkeypatch.setenv("LITELLM_MASTER_KEY", self.master_key)
        monkeypatch.setenv("LLM_GITOPS_NO_GPU_REQUESTS", "1")  # no GPU here; GPU ids stay exclusive in plans
        self.ports = {k: free_port() for k in ("alpha", "beta", "gamma", "gateway", "cache")}
        self.providers: dict[str, Any] = {
            "alpha": stub_provider(self.ports["alpha"], "m-alpha"),
            "beta": stub_provider(self.ports["beta"], "m-beta", type_="llama_cpp"),
        }
        self.mappings: dict[str, Any] = {"exact_matches": {}}
        self.stack: dict[str, Any] = {
            "name": self.name,
            "gateway": {"image": STUB, "base_url": f"http://127.0.0.1:{self.ports['gateway']}",
                        "master_key_env": "LITELLM_MASTER_KEY", "startup_timeout_s": 20},
            "policy": {"allowed_images": ["llm-gitops-test/"]},
        }
        self.foreign: list[str] = []   # ids of containers a test made without our labels

    # ------------------------------------------------------------------ spec and git

    def files(self) -> dict[str, str]:
        return {"providers.yaml": yaml.safe_dump({"providers": self.providers}, sort_keys=False),
                "model-mappings.yaml": yaml.safe_dump(self.mappings, sort_keys=False),
                "stack.yaml": yaml.safe_dump(self.stack, sort_keys=False)}

    def commit(self, message: str = "change") -> str:
        return self.repo.commit(self.files(), message)

    def with_cache(self) -> None:
        self.stack["cache"] = {"image": REDIS, "base_url": f"redis://127.0.0.1:{self.ports['cache']}",
                               "startup_timeout_s": 20}

    def copy_providers(self) -> dict[str, Any]:
        return copy.deepcopy(self.providers)

    # ------------------------------------------------------------------ the CLI

    def cli(self, *argv: str) -> tuple[int, str, str]:
        from controller.cli import main
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
        return code, out.getvalue(), err.getvalue()

    def apply(self, *extra: str) -> tuple[int, str, str]:
        return self.cli("apply", "--repo", str(self.repo.path), "--state-dir", str(self.state), *extra)

    def apply_in_background(self, **popen: Any) -> subprocess.Popen[str]:
        """`llm-gitops apply` as its own process, to be killed or raced (stdout/stderr: popen)."""
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        popen.setdefault("stdout", subprocess.DEVNULL)
        popen.setdefault("stderr", subprocess.DEVNULL)
        return subprocess.Popen([sys.executable, "-m", "controller", "apply", "--repo", str(self.repo.path),
                                 "--state-dir", str(self.state)], env=env, text=True, **popen)

    def status(self) -> dict[str, Any]:
        code, out, _ = self.cli("status", "--state-dir", str(self.state), "--format", "json")
        assert code == 0
        return json.loads(out)

    def history(self) -> list[dict[str, Any]]:
        code, out, _ = self.cli("history", "--state-dir", str(self.state), "--format", "json")
        assert code == 0
        return json.loads(out)

    # ------------------------------------------------------------------ the engine

    def containers(self, *, all_: bool = True) -> dict[str, dict[str, Any]]:
        """name -> inspect of every container of this stack (ours by label)."""
        found = self.engine.api.containers(all=all_, filters={"label": f"llm-gitops.stack={self.name}"})
        return {c["Names"][0].lstrip("/"): self.engine.api.inspect_container(c["Id"]) for c in found}

    def ids(self) -> dict[str, str]:
        return {name: info["Id"] for name, info in self.containers().items()}

    def running(self) -> dict[str, str]:
        """name -> spec hash label of every running container of this stack."""
        return {n: i["Config"]["Labels"]["llm-gitops.spec-hash"] for n, i in self.containers().items()
                if i["State"]["Running"]}

    def cname(self, key: str) -> str:
        return f"{self.name}-{key}"

    def run_foreign(self, name: str, port: int) -> str:
        """A container without our labels (host network, 127.0.0.1:port)."""
        c = self.engine.api.create_container(STUB, command=["--host", "127.0.0.1", "--port", str(port)],
                                             name=name, host_config=self.engine.api.create_host_config(
                                                 network_mode="host"))
        self.foreign.append(c["Id"])
        self.engine.api.start(c["Id"])
        return str(c["Id"])

    def stack_ids(self, stack: str) -> list[str]:
        return [c["Id"] for c in self.engine.api.containers(all=True, filters={"label": f"llm-gitops.stack={stack}"})]

    def remove_stack(self, stack: str) -> None:
        """Remove, by id, every container of `stack` (a name a test renamed its stack to)."""
        for cid in self.stack_ids(stack):
            with contextlib.suppress(Exception):
                self.engine.api.remove_container(cid, force=True)

    def cleanup(self) -> None:
        self.remove_stack(self.name)
        for cid in self.foreign:
            with contextlib.suppress(Exception):
                self.engine.api.remove_container(cid, force=True)


@pytest.fixture
def lab(engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    the_lab = Lab(engine, tmp_path, monkeypatch)
    try:
        yield the_lab
    finally:
        the_lab.cleanup()


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def ask(lab: Lab, model: str, *, key: str | None = "master", content: str = "hello") -> tuple[int, dict[str, Any]]:
    """A chat completion through the Lab's gateway on 127.0.0.1 (never a proxy): (status, body).
    `key`: "master" (the Lab's master key), another key, or None (no Authorization header)."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": content}]}).encode()
    token = lab.master_key if key == "master" else key
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(f"http://127.0.0.1:{lab.ports['gateway']}/v1/chat/completions", data=body,
                                 headers=headers)
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw or b"{}")
        except ValueError:
            return exc.code, {"raw": raw.decode("utf-8", "replace")[:500]}
