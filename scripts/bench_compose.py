"""`make bench`, part 2 and 3: llm-gitops against `docker-compose up -d` (Debian's 1.29.2) on
the same 10-container stub stack (scripts/bench_stack.py), both up at once on their own free
127.0.0.1 ports, measured in the same run, turn about (which side goes first alternates).

  noop     `llm-gitops apply` on an unchanged commit vs `docker-compose up -d` on an unchanged
           file: wall time of the command as a user runs it (Python's start included on both
           sides; compose is Python too), and its CPU time.
  args     one provider's args change (`--seed N`): wall time until the command returns, and
           for compose also until every container answers its health endpoint (compose 1.29
           does not wait for health; llm-gitops' apply returns only after its health gate:
           3 good probes 0.5 s apart). Containers restarted, counted from the engine (ids and
           StartedAt before and after).
  gateway  a change only to the gateway's config file (a new public name): llm-gitops renders
           a new config, proves it on a canary, swaps it and restarts the gateway; compose
           reads the same new file from the directory it mounts, restarts nothing, and its
           gateway keeps serving the old names (read on /v1/models).

Removes everything it started (found by its unique stack/project label) and its temp dir,
also on failure. Needs the engine, the stub image and docker-compose (make bench does all).

    python scripts/bench_compose.py [--noop-runs 10] [--change-runs 5] [--gateway-runs 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_lib as lib  # noqa: E402
import bench_stack  # noqa: E402
from bench_stack import Stack  # noqa: E402

from controller.render import render  # noqa: E402
from controller.spec import load_files  # noqa: E402


@dataclass
class Ours:
    """The llm-gitops side: a spec repo, a state dir, and `llm-gitops apply`."""

    stack: Stack
    repo: Path
    state: Path
    env: dict[str, str]

    @property
    def label(self) -> str:
        return f"llm-gitops.stack={self.stack.name}"

    def commit(self, stack: Stack, message: str) -> None:
        self.stack = stack
        lib.commit(self.repo, bench_stack.spec_files(stack), message)

    def apply(self) -> tuple[float, float]:
        wall, cpu, _ = lib.timed([*lib.llm_gitops(), "apply", "--repo", str(self.repo), "--state-dir",
                                  str(self.state)], env=self.env)
        return wall, cpu


@dataclass
class Compose:
    """The docker-compose side: a compose file, the gateway's config directory, `up -d`."""

    stack: Stack
    project: str
    dir: Path
    env: dict[str, str]

    @property
    def label(self) -> str:
        return f"com.docker.compose.project={self.project}"

    @property
    def config(self) -> Path:
        return self.dir / "gateway" / "config.yaml"

    def write(self, stack: Stack, *, config: bool = True) -> None:
        """The compose file; with `config`, also the gateway's config file, written in place
        (as an editor or `cat >` would: the container sees the new content at once)."""
        self.stack = stack
        (self.dir / "docker-compose.yml").write_text(bench_stack.compose_text(stack, str(self.dir / "gateway")))
        if config:
            self.config.parent.mkdir(exist_ok=True)
            with self.config.open("w") as f:
                f.write(rendered_config(stack))

    def up(self) -> tuple[float, float]:
        wall, cpu, _ = lib.timed(["docker-compose", "-p", self.project, "-f", str(self.dir / "docker-compose.yml"),
                                  "up", "-d"], env=self.env)
        return wall, cpu


def rendered_config(stack: Stack) -> str:
    """The LiteLLM config our renderer makes of the stack: compose's gateway mounts the same text."""
    return render(load_files(bench_stack.spec_files(stack)).require()).config_text


def _urls(stack: Stack) -> list[str]:
    return list(stack.health_urls().values())


def bench_noop(ours: Ours, compose: Compose, client: Any, runs: int) -> dict[str, Any]:
    rows: dict[str, list[float]] = {"ours_s": [], "ours_cpu_s": [], "compose_s": [], "compose_cpu_s": []}
    restarts = {"ours": 0, "compose": 0}
    for i in range(runs):
        for side in (("ours", "compose") if i % 2 == 0 else ("compose", "ours")):
            target = ours if side == "ours" else compose
            before = lib.snapshot(client, target.label)
            wall, cpu = target.apply() if isinstance(target, Ours) else target.up()
            restarts[side] += len(lib.restarted(before, lib.snapshot(client, target.label)))
            rows[f"{side}_s"].append(wall)
            rows[f"{side}_cpu_s"].append(cpu)
    out: dict[str, Any] = {k: lib.summary(v) for k, v in rows.items()}
    out["restarted"] = restarts
    out["ratio_compose_over_ours"] = round(out["compose_s"]["median"] / out["ours_s"]["median"], 2)
    return out


def bench_args(ours: Ours, compose: Compose, client: Any, runs: int, provider: str) -> dict[str, Any]:
    rows: dict[str, list[float]] = {"ours_s": [], "compose_returned_s": [], "compose_healthy_s": []}
    counts: dict[str, list[list[str]]] = {"ours": [], "compose": []}
    for i in range(runs):
        base_args = ours.stack.provider(provider).args
        args = (*[a for j, a in enumerate(base_args) if a != "--seed" and (j == 0 or base_args[j - 1] != "--seed")],
                "--seed", str(100 + i))
        for side in (("ours", "compose") if i % 2 == 0 else ("compose", "ours")):
            if side == "ours":
                ours.commit(ours.stack.with_args(provider, args), f"{provider}: --seed {100 + i}")
                before = lib.snapshot(client, ours.label)
                wall, _ = ours.apply()
                counts["ours"].append(lib.restarted(before, lib.snapshot(client, ours.label)))
                rows["ours_s"].append(wall)
            else:
                compose.write(compose.stack.with_args(provider, args), config=False)
                before = lib.snapshot(client, compose.label)
                t0 = time.perf_counter()
                wall, _ = compose.up()
                lib.all_healthy(_urls(compose.stack))
                healthy = time.perf_counter() - t0
                counts["compose"].append(lib.restarted(before, lib.snapshot(client, compose.label)))
                rows["compose_returned_s"].append(wall)
                rows["compose_healthy_s"].append(healthy)
    out: dict[str, Any] = {k: lib.summary(v) for k, v in rows.items()}
    out["restarted"] = {side: sorted({len(c) for c in cs}) for side, cs in counts.items()}
    out["restarted_names"] = {side: cs[-1] for side, cs in counts.items()}
    out["ratio_compose_returned_over_ours"] = round(out["compose_returned_s"]["median"] / out["ours_s"]["median"], 2)
    out["ratio_compose_healthy_over_ours"] = round(out["compose_healthy_s"]["median"] / out["ours_s"]["median"], 2)
    return out


def bench_gateway(ours: Ours, compose: Compose, client: Any, runs: int) -> dict[str, Any]:
    """A new public name each run: the gateway's config changes, nothing else does."""
    rows: dict[str, list[float]] = {"ours_s": [], "compose_s": []}
    ours_restarted: list[list[str]] = []
    compose_restarted: list[list[str]] = []
    ours_serves_new: list[bool] = []
    compose_serves_new: list[bool] = []
    compose_file_new: list[bool] = []
    ours_gw = f"http://127.0.0.1:{ours.stack.gateway_port}"
    compose_gw = f"http://127.0.0.1:{compose.stack.gateway_port}"
    for i in range(runs):
        public = f"bench-extra-{i}"
        target = ours.stack.providers[4].name
        ours.commit(ours.stack.with_alias(public, target), f"a public name {public}")
        before = lib.snapshot(client, ours.label)
        wall, _ = ours.apply()
        ours_restarted.append(lib.restarted(before, lib.snapshot(client, ours.label)))
        ours_serves_new.append(public in (lib.served_models(ours_gw) or []))
        rows["ours_s"].append(wall)

        compose.write(compose.stack.with_alias(public, target))
        before = lib.snapshot(client, compose.label)
        wall, _ = compose.up()
        compose_restarted.append(lib.restarted(before, lib.snapshot(client, compose.label)))
        compose_serves_new.append(public in (lib.served_models(compose_gw) or []))
        compose_file_new.append(public in compose.config.read_text())
        rows["compose_s"].append(wall)
    out: dict[str, Any] = {k: lib.summary(v) for k, v in rows.items()}
    out.update(ours_restarted=ours_restarted, compose_restarted=compose_restarted,
               ours_serves_new_name=ours_serves_new, compose_serves_new_name=compose_serves_new,
               compose_file_has_new_name=compose_file_new,
               compose_gateway_lists=lib.served_models(compose_gw))
    return out


def sides(work: Path, env: dict[str, str]) -> tuple[Ours, Compose]:
    """Both sides, named uniquely, on 20 distinct free ports; nothing runs yet."""
    ports = lib.free_ports(20)
    tag = secrets.token_hex(3)
    ours = Ours(bench_stack.make_stack(f"bo{tag}", ports[:10]), lib.init_repo(work / "repo"), work / "state", env)
    compose = Compose(bench_stack.make_stack(f"bc{tag}", ports[10:]), f"bc{tag}", work / "compose", env)
    compose.dir.mkdir()
    return ours, compose


def first_pass(client: Any, ours: Ours, compose: Compose) -> dict[str, Any]:
    first: dict[str, Any] = {}
    ours.commit(ours.stack, "10 containers")
    first["ours_s"] = round(ours.apply()[0], 3)
    compose.write(compose.stack)
    t0 = time.perf_counter()
    first["compose_returned_s"] = round(compose.up()[0], 3)
    lib.all_healthy(_urls(compose.stack))
    first["compose_healthy_s"] = round(time.perf_counter() - t0, 3)
    for side in (ours, compose):
        running = lib.snapshot(client, side.label)
        if len(running) != 10:
            raise RuntimeError(f"{side.label}: {len(running)} containers after the first pass, not 10")
    return first


def run(client: Any, ours: Ours, compose: Compose, opts: argparse.Namespace) -> None:
    first = first_pass(client, ours, compose)
    print(f"first pass (10 containers): ours {first['ours_s']:.2f} s; compose returned "
          f"{first['compose_returned_s']:.2f} s, healthy {first['compose_healthy_s']:.2f} s", flush=True)
    noop = bench_noop(ours, compose, client, opts.noop_runs)
    print(f"no-op: ours {noop['ours_s']['median']:.3f} s, compose {noop['compose_s']['median']:.3f} s "
          f"(median of {opts.noop_runs})", flush=True)
    args = bench_args(ours, compose, client, opts.change_runs, ours.stack.providers[3].name)
    print(f"args change: ours {args['ours_s']['median']:.3f} s; compose returned "
          f"{args['compose_returned_s']['median']:.3f} s, healthy {args['compose_healthy_s']['median']:.3f} s; "
          f"restarted ours {args['restarted']['ours']}, compose {args['restarted']['compose']}", flush=True)
    gateway = bench_gateway(ours, compose, client, opts.gateway_runs)
    print(f"gateway config change: ours {gateway['ours_s']['median']:.3f} s restarting "
          f"{gateway['ours_restarted'][-1]}; compose {gateway['compose_s']['median']:.3f} s restarting "
          f"{gateway['compose_restarted'][-1]}, serving the new name: {gateway['compose_serves_new_name']}",
          flush=True)
    version = lib.timed(["docker-compose", "version", "--short"])[2].stdout.strip()
    lib.write_json(opts.json, {"compose_version": version, "containers": 10, "first_pass": first,
                               "noop": noop, "args_change": args, "gateway_config_change": gateway})
    print(f"bench_compose: results in {opts.json}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noop-runs", type=int, default=10)
    ap.add_argument("--change-runs", type=int, default=5)
    ap.add_argument("--gateway-runs", type=int, default=3)
    ap.add_argument("--json", type=Path, default=lib.ROOT / ".bench" / "compose.json")
    opts = ap.parse_args(argv)
    lib.compile_package()
    if not shutil.which("docker-compose"):
        print("bench_compose: docker-compose is not on PATH: run `bash scripts/compose.sh` (make bench does)",
              file=sys.stderr)
        return 1
    client = lib.engine()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # clean up on SIGTERM too
    work = Path(tempfile.mkdtemp(prefix="llm-gitops-bench-"))
    env = {**os.environ, "LITELLM_MASTER_KEY": "sk-bench-" + secrets.token_hex(12)}
    labels: list[str] = []   # what to remove at the end: everything started under these labels
    try:
        ours, compose = sides(work, env)
        labels += [ours.label, compose.label, f"llm-gitops.state-dir={ours.state}"]
        run(client, ours, compose, opts)
    finally:
        for label in labels:
            lib.remove_labelled(client, label)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
