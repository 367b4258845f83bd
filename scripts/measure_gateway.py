"""Measure what a config-only change costs the users of the gateway (issue 5, "Measure").

Brings config/demo up on Docker under a throw-away stack name and free ports on 127.0.0.1
(real LiteLLM, real Redis, stub providers), then RUNS times: commit a change that only adds a
public name (the gateway alone restarts), run `llm-gitops apply`, and measure

  unavailable_s      how long /health/liveliness of the gateway failed, sampled every 50 ms
                     from the commit until the pass ended;
  commit_to_answer_s from the end of `git commit` to the first chat completion for the new
                     name that the gateway answered.

Prints each run and the medians. Removes its containers (by id, found by its stack label) and
its temp dir at the end, also on failure. Needs the engine and images (make engine images).

    .venv/bin/python scripts/measure_gateway.py [--runs 5] [--no-canary] [--loop]

With --loop, nothing calls apply after the first pass: `llm-gitops run` watches the repo,
so commit->answer includes noticing the commit (the ref watcher), as a user sees it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
SAMPLE_S = 0.05


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "m", "GIT_AUTHOR_EMAIL": "m@example.invalid",
           "GIT_COMMITTER_NAME": "m", "GIT_COMMITTER_EMAIL": "m@example.invalid"}
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def alive(url: str) -> bool:
    try:
        with OPENER.open(url, timeout=1) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def completes(gateway: str, model: str, key: str) -> bool:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": f"hi {time.time_ns()}"}]}).encode()
    req = urllib.request.Request(f"{gateway}/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    try:
        with OPENER.open(req, timeout=5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-canary", action="store_true", help="pass --no-canary to apply")
    ap.add_argument("--timeout", type=float, default=180.0, help="give up on one run after this many seconds")
    ap.add_argument("--loop", action="store_true", help="let a running `llm-gitops run` notice each commit")
    args = ap.parse_args()

    cli = [str(Path(sys.executable).parent / "llm-gitops")]
    stack = "measure" + secrets.token_hex(3)
    tmp = Path(tempfile.mkdtemp(prefix="llm-gitops-measure-"))
    repo, state = tmp / "repo", tmp / "state"
    repo.mkdir()
    env = {**os.environ, "LITELLM_MASTER_KEY": "sk-" + secrets.token_hex(32), "LLM_GITOPS_NO_GPU_REQUESTS": "1"}
    key = env["LITELLM_MASTER_KEY"]
    files = {p.name: p.read_text() for p in (ROOT / "config" / "demo").glob("*.yaml")}
    ports = {int(p) for text in files.values() for p in re.findall(r"127\.0\.0\.1:(\d+)", text)}
    remap = {p: free_port() for p in ports}
    for name, text in files.items():
        text = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{remap[int(m.group(1))]}", text)
        files[name] = re.sub(r"(?m)^name: demo$", f"name: {stack}", text)
    gateway = f"http://127.0.0.1:{remap[14000]}"
    apply = [*cli, "apply", "--repo", str(repo), "--state-dir", str(state), *(["--no-canary"] if args.no_canary else [])]

    def commit(message: str) -> str:
        for name, text in files.items():
            (repo / name).write_text(text)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", message)
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()

    def loop_applied(sha: str, deadline: float) -> bool:
        """The running controller's history has a finished pass on `sha`: whether it applied."""
        while time.monotonic() < deadline:
            try:
                lines = (state / "history.jsonl").read_text().splitlines()
            except OSError:
                lines = []
            for line in reversed(lines):
                entry = json.loads(line) if line.strip().startswith("{") else {}
                if entry.get("commit") == sha and entry.get("outcome") != "interrupted":
                    return bool(entry.get("outcome") == "applied")
            time.sleep(SAMPLE_S)
        return False

    controller: subprocess.Popen[str] | None = None

    results: list[tuple[float, float, float]] = []
    try:
        git(repo, "init", "-q", "-b", "main")
        commit("config/demo")
        t0 = time.monotonic()
        first = subprocess.run(apply, env=env, capture_output=True, text=True, timeout=600)
        if first.returncode != 0:
            print(first.stdout + first.stderr, file=sys.stderr)
            return 1
        print(f"stack {stack} up in {time.monotonic() - t0:.1f} s (gateway {gateway}); "
              f"canary {'off' if args.no_canary else 'on'}; {'llm-gitops run' if args.loop else 'apply'} per commit")
        if args.loop:
            controller = subprocess.Popen([*cli, "run", "--repo", str(repo), "--state-dir", str(state),
                                           "--http-port", "off", "--log-format", "json",
                                           *(["--no-canary"] if args.no_canary else [])],
                                          env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "run.log").open("w"))
            time.sleep(3)  # its first pass: a no-op
        for run in range(1, args.runs + 1):
            name = f"measure-{run}"
            # a capability is an alias in the gateway's config: only the gateway restarts
            # (config/demo's model-mappings.yaml ends with its `capabilities:` block)
            files["model-mappings.yaml"] = (files["model-mappings.yaml"].rstrip("\n")
                                            + f"\n  {name}: {{preferred_models: [phi-mini]}}\n")
            down = [0.0]
            stop = threading.Event()

            def sample() -> None:
                last = time.monotonic()
                while not stop.is_set():
                    ok = alive(f"{gateway}/health/liveliness")
                    now = time.monotonic()
                    if not ok:
                        down[0] += now - last
                    last = now
                    time.sleep(SAMPLE_S)

            sha = commit(f"alias {name}")
            committed = time.monotonic()
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            if controller is not None:
                ok = loop_applied(sha, committed + args.timeout)
                applied = time.monotonic()
                if not ok:
                    stop.set()
                    print((tmp / "run.log").read_text()[-3000:], file=sys.stderr)
                    return 1
            else:
                done = subprocess.run(apply, env=env, capture_output=True, text=True, timeout=args.timeout)
                applied = time.monotonic()
                if done.returncode != 0:
                    stop.set()
                    print(done.stdout + done.stderr, file=sys.stderr)
                    return 1
            while not completes(gateway, name, key):
                if time.monotonic() - committed > args.timeout:
                    stop.set()
                    print(f"run {run}: {name} never answered", file=sys.stderr)
                    return 1
                time.sleep(SAMPLE_S)
            answered = time.monotonic()
            stop.set()
            sampler.join()
            results.append((down[0], answered - committed, applied - committed))
            print(f"run {run}: liveliness failing {down[0]:.2f} s, commit->answer {answered - committed:.2f} s "
                  f"(commit->applied {applied - committed:.2f} s)")
        med = [statistics.median(r[i] for r in results) for i in range(3)]
        print(f"median of {len(results)}: unavailable {med[0]:.2f} s, commit->answer {med[1]:.2f} s, "
              f"commit->applied {med[2]:.2f} s")
        return 0
    finally:
        if controller is not None:
            controller.terminate()
            controller.wait(timeout=60)
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=llm-gitops.stack={stack}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
