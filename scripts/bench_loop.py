"""`make bench`, part 4 and 5: the unattended controller (`llm-gitops run --log-format json`,
a real process) on the 10-container stub stack of scripts/bench_stack.py.

  latency  commit-to-converged, median over COMMITS commits, for a watched local repository
           (the ref watcher; poll and drift intervals at their defaults) and for a polled
           remote (a bare repository reached by a file:// URL, --poll-interval-s POLL).
           Each commit changes one provider's STUB_REPLY; "converged" is seen from outside:
           the provider's own port answers a chat completion with the new text. The clock
           starts when `git commit` (local) or `git push` (remote) returns. Also reported:
           commit -> pass_start and commit -> pass_end (from the log's timestamps): the pass
           ends only after the new container's health gate (3 good probes 0.5 s apart), so
           the change serves before the controller calls it done.
  overhead the part of each pass that is not container start and health waits, from the JSON
           log's timestamps: pass_start -> pass_end minus every starting -> healthy interval
           (engine start + health gate of each started container) and canary_start ->
           canary_passed.
  rest     the controller at rest for REST_S seconds after converging (drift interval at its
           default): CPU seconds (utime + stime of the process and its reaped children, from
           /proc/<pid>/stat) and RSS (VmRSS, the max over the window, of the process and of
           the process plus its live children), sampled every second; /metrics before and
           after says how many passes (drift checks) ran in the window, and how long they took.

Removes everything it started (by its unique stack label) and its temp dir, also on failure.

    python scripts/bench_loop.py [--commits 10] [--poll 1] [--rest 60] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_lib as lib  # noqa: E402
import bench_stack  # noqa: E402
from bench_stack import Stack  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
# The first event of a pass that changes something on the engine (a stop comes after its call).
ACTING = ("config_staged", "stopped", "starting", "canary_start")
TARGET = 3   # the provider whose STUB_REPLY each commit changes (a vLLM stand-in)


@dataclass
class Run:
    """One `llm-gitops run` process, its JSON log, and the repo it serves."""

    proc: subprocess.Popen[str]
    log: Path
    state: Path
    events: list[dict[str, Any]] = field(default_factory=list)

    def read(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        self.events = out
        return out

    def pass_end(self, commit: str, timeout: float = 120) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the controller exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            return next((e for e in self.read() if e.get("event") == "pass_end"
                         and e.get("commit") == commit[:12]), None)
        return lib.wait_until(ended, timeout=timeout, interval=0.05, what=f"pass_end of {commit[:12]}")

    def http(self) -> str:
        def port() -> str | None:
            with contextlib.suppress(OSError, ValueError):
                return json.loads((self.state / "loop.json").read_text()).get("http")
            return None
        return f"http://{lib.wait_until(port, timeout=30, what='the controller endpoint')}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(timeout=30)


def start(repo: str, state: Path, log: Path, env: dict[str, str], *extra: str) -> Run:
    argv = [*lib.llm_gitops(), "run", "--repo", repo, "--state-dir", str(state), "--http-port", "0",
            "--log-format", "json", *extra]
    with log.open("w") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    return Run(proc, log, state)


def _ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def pass_breakdown(events: list[dict[str, Any]], pass_id: str) -> dict[str, float]:
    """A pass's duration; its time in container start + health gates and in the canary; and
    the rest (the overhead), split three ways: up to the first engine change it logs (resolve,
    load, check, render, observe, plan, port checks, and the stop of a replaced container, which
    is logged once done), after its last health gate (remove what was set aside, restart policy,
    record and history), and between (renames and creates, each logged before its start)."""
    mine = [e for e in events if e.get("pass_id") == pass_id]
    begin = next(_ts(e) for e in mine if e["event"] == "pass_start")
    end = next(_ts(e) for e in mine if e["event"] == "pass_end")
    acting = [_ts(e) for e in mine if e["event"] in ACTING]
    gated = [_ts(e) for e in mine if e["event"] in ("healthy", "canary_passed")]
    started: dict[str, float] = {}
    waits = canary = 0.0
    canary_t0: float | None = None
    for e in mine:
        if e["event"] == "starting":
            started[e["container"]] = _ts(e)
        elif e["event"] == "healthy" and e["container"] in started:
            waits += _ts(e) - started.pop(e["container"])
        elif e["event"] == "canary_start":
            canary_t0 = _ts(e)
        elif e["event"] == "canary_passed" and canary_t0 is not None:
            canary += _ts(e) - canary_t0
    overhead = end - begin - waits - canary
    before = (min(acting) - begin) if acting else overhead
    after = (end - max(gated)) if gated else 0.0
    return {"duration_s": end - begin, "start_and_health_s": waits, "canary_s": canary, "overhead_s": overhead,
            "overhead_to_first_change_s": before, "overhead_after_last_gate_s": after,
            "overhead_between_s": overhead - before - after}


def latency(run: Run, stack: Stack, publish: Any, commits: int, tag: str,
            jitter: float) -> tuple[Stack, dict[str, Any]]:
    """`publish(stack, message) -> commit` makes the commit visible (commit, or commit + push).
    Each commit waits a random 0-`jitter` s first: committing right after the previous pass
    would land at the same phase of the poller's cycle every time, and bias the median."""
    target = stack.providers[TARGET]
    rows: dict[str, list[float]] = {k: [] for k in (
        "commit_to_converged_s", "commit_to_pass_start_s", "commit_to_pass_end_s", "pass_s", "start_and_health_s",
        "overhead_s", "overhead_to_first_change_s", "overhead_between_s", "overhead_after_last_gate_s")}
    for i in range(commits):
        reply = f"bench-{tag}-{i}"
        stack = stack.with_env(target.name, {"STUB_REPLY": reply})
        time.sleep(random.uniform(0, jitter))
        sha = publish(stack, f"{target.name}: reply {reply}")
        t0, wall0 = time.perf_counter(), time.time()
        lib.wait_until(lambda want=reply: lib.chat_reply(target.port, target.model, timeout=1) == want,
                       timeout=120, what=f"{target.name} answering {reply!r}")
        rows["commit_to_converged_s"].append(time.perf_counter() - t0)
        end = run.pass_end(sha)
        if end.get("outcome") != "applied":
            raise RuntimeError(f"the pass of {sha[:12]} ended {end.get('outcome')}: {end.get('message')}")
        parts = pass_breakdown(run.events, str(end["pass_id"]))
        start_ev = next(e for e in run.events if e.get("event") == "pass_start" and e.get("pass_id") == end["pass_id"])
        rows["commit_to_pass_start_s"].append(_ts(start_ev) - wall0)
        rows["commit_to_pass_end_s"].append(_ts(end) - wall0)
        rows["pass_s"].append(parts.pop("duration_s"))
        for key, value in parts.items():
            if key in rows:
                rows[key].append(value)
    return stack, {k: lib.summary(v) for k, v in rows.items()}


# --------------------------------------------------------------------------- at rest


def _cpu_ticks(pid: int) -> tuple[int, int]:
    """(utime + stime, cutime + cstime) of `pid`, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def _rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        m = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
        return int(m.group(1)) if m else 0
    return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _passes(metrics: str) -> tuple[int, float]:
    """(passes so far, their summed duration in seconds) from the controller's /metrics."""
    count = sum(float(m) for m in re.findall(r"^llm_gitops_passes_total\{[^}]*\} (\S+)$", metrics, re.M))
    total = re.search(r"^llm_gitops_pass_duration_seconds_sum (\S+)$", metrics, re.M)
    return int(count), float(total.group(1)) if total else 0.0


def at_rest(run: Run, seconds: int) -> dict[str, Any]:
    pid = run.proc.pid
    base = run.http()
    passes0, seconds0 = _passes(lib.http_get(f"{base}/metrics")[1])
    own0, kids0 = _cpu_ticks(pid)
    rss, rss_tree = [], []
    t0 = time.monotonic()
    for i in range(seconds):
        time.sleep(max(0.0, t0 + i + 1 - time.monotonic()))
        if run.proc.poll() is not None:
            raise RuntimeError(f"the controller exited ({run.proc.returncode}) while at rest")
        own_rss = _rss_kib(pid)
        rss.append(own_rss)
        rss_tree.append(own_rss + sum(_rss_kib(c) for c in _children(pid)))
    own1, kids1 = _cpu_ticks(pid)
    window = time.monotonic() - t0
    passes1, seconds1 = _passes(lib.http_get(f"{base}/metrics")[1])
    passes = passes1 - passes0
    cpu = (own1 - own0 + kids1 - kids0) / TICK
    return {"window_s": round(window, 1), "cpu_s": round(cpu, 3), "cpu_children_s": round((kids1 - kids0) / TICK, 3),
            "cpu_percent": round(100 * cpu / window, 3), "rss_max_mib": round(max(rss) / 1024, 1),
            "rss_with_children_max_mib": round(max(rss_tree) / 1024, 1), "samples": len(rss),
            "passes_in_window": passes,
            # a drift check with nothing to do; the loop records durations to 0.01 s
            "pass_in_window_s": round((seconds1 - seconds0) / passes, 3) if passes else None}


# --------------------------------------------------------------------------- the two sources


def local_case(work: Path, env: dict[str, str], stack: Stack, opts: argparse.Namespace) -> dict[str, Any]:
    repo = lib.init_repo(work / "local-repo")
    lib.commit(repo, bench_stack.spec_files(stack), "10 containers")
    run = start(str(repo), work / "local-state", work / "local.log", env)
    try:
        first = run.pass_end(lib.git(repo, "rev-parse", "HEAD"), timeout=300)
        stack, result = latency(run, stack, lambda s, m: lib.commit(repo, bench_stack.spec_files(s), m),
                                opts.commits, "local", opts.poll)
        time.sleep(opts.settle)
        result["first_pass_s"] = first["duration_s"]
        result["rest"] = at_rest(run, opts.rest)
        result["settings"] = "watched local repo; --poll-interval-s and --drift-interval-s at their defaults (30 s, 60 s)"
    finally:
        result_code = run.stop()
    result["exit_code"] = result_code
    return result


def remote_case(work: Path, env: dict[str, str], stack: Stack, opts: argparse.Namespace) -> dict[str, Any]:
    bare = work / "remote.git"
    lib.git(work, "init", "-q", "--bare", "-b", "main", str(bare))
    clone = lib.init_repo(work / "remote-work")
    lib.git(clone, "remote", "add", "origin", str(bare))

    def publish(s: Stack, message: str) -> str:
        sha = lib.commit(clone, bench_stack.spec_files(s), message)
        lib.git(clone, "push", "-q", "origin", "main")
        return sha

    first_sha = publish(stack, "10 containers")
    run = start(f"file://{bare}", work / "remote-state", work / "remote.log", env,
                "--poll-interval-s", str(opts.poll))
    try:
        first = run.pass_end(first_sha, timeout=300)
        stack, result = latency(run, stack, publish, opts.commits, "remote", opts.poll)
        time.sleep(opts.settle)
        result["first_pass_s"] = first["duration_s"]
        result["rest"] = at_rest(run, opts.rest)
        result["settings"] = f"bare repo by file:// URL; --poll-interval-s {opts.poll:g}; drift interval default (60 s)"
    finally:
        result_code = run.stop()
    result["exit_code"] = result_code
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=10)
    ap.add_argument("--poll", type=float, default=1.0, help="--poll-interval-s of the remote case")
    ap.add_argument("--rest", type=int, default=60, help="seconds at rest to sample")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after the last pass before the rest window")
    ap.add_argument("--json", type=Path, default=lib.ROOT / ".bench" / "loop.json")
    opts = ap.parse_args(argv)
    lib.compile_package()
    client = lib.engine()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # clean up on SIGTERM too
    work = Path(tempfile.mkdtemp(prefix="llm-gitops-bench-loop-"))
    env = {**os.environ, "LITELLM_MASTER_KEY": "sk-bench-" + secrets.token_hex(12)}
    tag = secrets.token_hex(3)
    ports = lib.free_ports(20)
    stacks = {"local": bench_stack.make_stack(f"bl{tag}", ports[:10]),
              "remote": bench_stack.make_stack(f"br{tag}", ports[10:])}
    results: dict[str, Any] = {"commits": opts.commits, "containers": 10}
    try:
        for name, case in (("local", local_case), ("remote", remote_case)):
            try:
                results[name] = case(work, env, stacks[name], opts)
            finally:
                lib.remove_labelled(client, f"llm-gitops.stack={stacks[name].name}")
            r = results[name]
            print(f"{name}: commit->converged {r['commit_to_converged_s']['median']:.2f} s, pass "
                  f"{r['pass_s']['median']:.2f} s, overhead {r['overhead_s']['median']:.3f} s (median of "
                  f"{opts.commits}); at rest {r['rest']['cpu_s']:.2f} CPU s / {r['rest']['window_s']:.0f} s, "
                  f"RSS max {r['rest']['rss_max_mib']:.0f} MiB", flush=True)
        lib.write_json(opts.json, results)
        print(f"bench_loop: results in {opts.json}")
    finally:
        for s in stacks.values():
            lib.remove_labelled(client, f"llm-gitops.stack={s.name}")
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
