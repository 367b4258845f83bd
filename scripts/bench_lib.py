"""I/O helpers shared by the real-engine benchmarks (scripts/bench_compose.py,
scripts/bench_loop.py): free ports, git repos, timed commands, HTTP on 127.0.0.1, and the
engine's view of a stack (container ids and start times), read from Docker, never from
llm-gitops' own output.

Everything here talks only to 127.0.0.1 and removes only containers found by a label the
bench chose itself (a unique stack or project name).
"""

from __future__ import annotations

import compileall
import contextlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # never a proxy: 127.0.0.1 only
T = TypeVar("T")
Snapshot = dict[str, tuple[str, str]]   # container name -> (id, StartedAt)


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports of 127.0.0.1 (held together while picked, so none repeats)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    """Write the spec files into `repo` (a work tree) and commit them; returns the commit."""
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def init_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    return path


def compile_package() -> bool:
    """Byte-compile controller/ before anything is timed, as `pip install` does for an installed
    package. An editable install gets its bytecode only when the package first runs with
    writing allowed, and these machines set PYTHONDONTWRITEBYTECODE=1: without this, every
    `llm-gitops` start would compile ~35 modules from source (about 0.1 s), a cost no user pays
    after the first run, while compose (Debian's, precompiled) would not pay it either."""
    return bool(compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "controller"), quiet=1))


def llm_gitops() -> list[str]:
    """The command as a user runs it: the installed console script next to this Python."""
    script = Path(sys.executable).with_name("llm-gitops")
    return [str(script)] if script.exists() else [sys.executable, "-m", "controller"]


def timed(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 300,
          check: bool = True) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """(wall seconds, CPU seconds of the command and its children, the result)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if check and result.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv[:3])} ...` exited {result.returncode}:\n"
                           f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, result


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """(status, body); status 0 when nothing answered."""
    try:
        with OPENER.open(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError):
        return 0, ""


def chat_reply(port: int, model: str, timeout: float = 2.0) -> str | None:
    """The text a chat completion at 127.0.0.1:port answers, or None."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with OPENER.open(req, timeout=timeout) as resp:
            return str(json.loads(resp.read())["choices"][0]["message"]["content"])
    except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError):
        return None


def served_models(base: str) -> list[str] | None:
    status, body = http_get(f"{base}/v1/models")
    if status != 200:
        return None
    return sorted(m["id"] for m in json.loads(body)["data"])


def wait_until(predicate: Callable[[], T | None], *, timeout: float, interval: float = 0.02,
               what: str = "a condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not met within {timeout:g} s")
        time.sleep(interval)


def all_healthy(urls: list[str], *, timeout: float = 60) -> float:
    """Seconds until every URL has answered 200 once (polled every 20 ms)."""
    t0 = time.perf_counter()
    pending = set(urls)

    def done() -> bool:
        for url in list(pending):
            if http_get(url, timeout=1)[0] == 200:
                pending.discard(url)
        return not pending
    wait_until(done, timeout=timeout, what=f"health of {sorted(pending)}")
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- the engine


def engine() -> Any:
    import docker
    client = docker.from_env(timeout=120)
    client.ping()
    return client


def snapshot(client: Any, label: str) -> Snapshot:
    """name -> (id, StartedAt) of every container with `label` (key=value), from the engine."""
    out: Snapshot = {}
    for c in client.api.containers(all=True, filters={"label": label}):
        info = client.api.inspect_container(c["Id"])
        out[info["Name"].lstrip("/")] = (info["Id"], info["State"]["StartedAt"])
    return out


def restarted(before: Snapshot, after: Snapshot) -> list[str]:
    """Containers created or (re)started between the two snapshots."""
    return sorted(name for name, (cid, started) in after.items() if before.get(name) != (cid, started))


def remove_labelled(client: Any, label: str) -> int:
    """Remove, by id, every container carrying `label` (a unique name this bench chose), and
    the networks compose made under it."""
    removed = 0
    for c in client.api.containers(all=True, filters={"label": label}):
        with contextlib.suppress(Exception):
            client.api.remove_container(c["Id"], force=True)
            removed += 1
    for n in client.api.networks(filters={"label": label}):
        with contextlib.suppress(Exception):
            client.api.remove_network(n["Id"])
    return removed


# --------------------------------------------------------------------------- numbers


def summary(values: list[float]) -> dict[str, float | int]:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4), "n": len(values)}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
