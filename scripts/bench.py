"""`make bench`: every benchmark in one run, then one report.

Runs scripts/bench_core.py (the pure core at 10 to 5,000 providers, and its plot),
scripts/bench_compose.py (llm-gitops vs docker-compose 1.29.2 on a 10-container stub stack)
and scripts/bench_loop.py (the controller: commit-to-converged latency, pass overhead, at
rest), each as its own process, one after the other. Records what the numbers depend on (date,
commit, cores, load before and after: the machine may be shared), merges everything into
.bench/results.json and writes .bench/report.md, which it also prints. The set-up (venv,
engine, images, docker-compose) is the Makefile's.

    python scripts/bench.py [--out .bench] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _out(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def meta() -> dict[str, Any]:
    dirty = bool(_out(["git", "status", "--porcelain", "--untracked-files=no"]))
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": _out(["git", "rev-parse", "--short=12", "HEAD"])
            + (" (with uncommitted changes)" if dirty else ""),
            "cores": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
            "docker": _out(["docker", "version", "--format", "{{.Server.Version}}"]),
            "gpu": "none" if not Path("/dev/nvidia0").exists() else "present",
            "load_before": _load()}


def run(script: str, *args: str) -> None:
    print(f"\n== {script} {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, str(SCRIPTS / script), *args], check=True, cwd=ROOT)


# --------------------------------------------------------------------------- the report


def _s(x: float) -> str:
    return f"{x:.3f} s" if x < 10 else f"{x:.1f} s"


def _med(d: dict[str, Any]) -> str:
    return f"{_s(d['median'])} ({_s(d['min'])}-{_s(d['max'])})"


def _each(counts: list[int]) -> str:
    """Containers restarted per run: `1 in each run`, or the range."""
    return f"{counts[0]} in each run" if len(counts) == 1 else f"{min(counts)}-{max(counts)} per run"


def _names(names: list[str]) -> str:
    return ", ".join(names) or "none"


def _runs(flags: list[bool]) -> str:
    return f"{'yes' if all(flags) else 'no' if not any(flags) else 'sometimes'} ({sum(flags)} of {len(flags)} runs)"


def core_md(core: dict[str, Any]) -> list[str]:
    lines = ["| providers | models | load + check | render | plan | total | per provider | total, gc off | "
             "per provider, gc off |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in core["sizes"]:
        lines.append(f"| {r['providers']:,} | {r['models']:,} | {r['load_check_s']:.3f} s | {r['render_s']:.3f} s | "
                     f"{r['plan_s']:.3f} s | **{r['total_s']:.3f} s** | {r['per_provider_ms']:.3f} ms | "
                     f"{r['total_gc_off_s']:.3f} s | {r['per_provider_gc_off_ms']:.3f} ms |")
    lines.append("")
    for label, lin in (("Growth", core["linearity"]), ("With the garbage collector off", core["linearity_gc_off"])):
        lines.append(f"{label}: total ~ N^{lin['exponent']} (least squares on log-log over {lin['fitted_sizes']}; "
                     f"1.0 is linear); the per-provider cost at {core['sizes'][-1]['providers']:,} is "
                     f"{lin['per_provider_ratio_largest_vs_ref']}x the one at {lin['ref_providers']:,}.")
    return lines


def compose_md(c: dict[str, Any]) -> list[str]:
    n, a, g, f = c["noop"], c["args_change"], c["gateway_config_change"], c["first_pass"]
    return [
        f"docker-compose {c['compose_version']}; {c['containers']} containers each side; median (min-max).", "",
        "| | llm-gitops | docker-compose | compose / llm-gitops |", "|---|---|---|---:|",
        f"| no-op, wall (n={n['ours_s']['n']}) | {_med(n['ours_s'])} | {_med(n['compose_s'])} | "
        f"{n['ratio_compose_over_ours']} |",
        f"| no-op, CPU of the command | {_s(n['ours_cpu_s']['median'])} | {_s(n['compose_cpu_s']['median'])} | "
        f"{n['compose_cpu_s']['median'] / n['ours_cpu_s']['median']:.2f} |",
        f"| no-op, containers restarted (all runs together) | {n['restarted']['ours']} | {n['restarted']['compose']} | |",
        f"| one provider's args, command returned (n={a['ours_s']['n']}) | {_med(a['ours_s'])} (health-gated) | "
        f"{_med(a['compose_returned_s'])} | {a['ratio_compose_returned_over_ours']} |",
        f"| one provider's args, all healthy | = returned | {_med(a['compose_healthy_s'])} | "
        f"{a['ratio_compose_healthy_over_ours']} |",
        f"| one provider's args, containers restarted | {_each(a['restarted']['ours'])} "
        f"({_names(a['restarted_names']['ours'])}) | {_each(a['restarted']['compose'])} "
        f"({_names(a['restarted_names']['compose'])}) | |",
        f"| gateway config only, command returned (n={g['ours_s']['n']}) | {_med(g['ours_s'])} | {_med(g['compose_s'])} | |",
        f"| gateway config only, containers restarted | {_each(sorted({len(r) for r in g['ours_restarted']}))} "
        f"({_names(g['ours_restarted'][-1])}) | {_each(sorted({len(r) for r in g['compose_restarted']}))} "
        f"({_names(g['compose_restarted'][-1])}) | |",
        f"| gateway config only, serves the new name | {_runs(g['ours_serves_new_name'])} | "
        f"{_runs(g['compose_serves_new_name'])}; its mounted file has it: {_runs(g['compose_file_has_new_name'])} | |",
        f"| first start of the 10 containers (once) | {_s(f['ours_s'])} (health-gated, one at a time) | "
        f"returned {_s(f['compose_returned_s'])}, healthy {_s(f['compose_healthy_s'])} | |",
    ]


LOOP_ROWS = [("commit_to_converged_s", "commit -> the changed provider answers with the new reply"),
             ("commit_to_pass_start_s", "commit -> pass_start logged"),
             ("commit_to_pass_end_s", "commit -> pass_end logged (health gate passed)"),
             ("pass_s", "pass (pass_start -> pass_end)"),
             ("start_and_health_s", "  of which container start + health gate"),
             ("overhead_s", "  of which the rest: the pass's overhead"),
             ("overhead_to_first_change_s", "    up to the first engine change (incl. the stop of the old one)"),
             ("overhead_between_s", "    rename + create"),
             ("overhead_after_last_gate_s", "    after the health gate (remove the old one, record)")]


def loop_md(loop: dict[str, Any]) -> list[str]:
    local, remote = loop["local"], loop["remote"]
    lines = [f"Median (min-max) over {loop['commits']} commits each; {loop['containers']} containers.", "",
             f"| | watched local repo | polled remote ({remote['settings'].split('; ')[1]}) |", "|---|---|---|"]
    for key, label in LOOP_ROWS:
        lines.append(f"| {label} | {_med(local[key])} | {_med(remote[key])} |")
    lines += ["", "At rest (after converging; sampled every second):", "",
              "| | watched local repo (intervals at defaults) | polled remote |", "|---|---|---|"]
    for key, label in (("window_s", "window"), ("cpu_s", "CPU seconds (process + reaped children)"),
                       ("cpu_children_s", "  of which children (git)"), ("cpu_percent", "CPU % of one core"),
                       ("rss_max_mib", "RSS max, MiB"), ("rss_with_children_max_mib", "RSS max with live children, MiB"),
                       ("passes_in_window", "passes in the window (/metrics)"),
                       ("pass_in_window_s", "  each took, s (a drift check; /metrics, 0.01 s resolution)")):
        lines.append(f"| {label} | {local['rest'][key]} | {remote['rest'][key]} |")
    lines += ["", f"First pass (10 containers, one at a time): local {local['first_pass_s']} s, "
              f"remote {remote['first_pass_s']} s. Controllers stopped with SIGTERM: exit "
              f"{local['exit_code']} and {remote['exit_code']}."]
    return lines


def report(results: dict[str, Any]) -> str:
    m = results["meta"]
    lines = [f"# llm-gitops benchmarks: {m['date']}", "",
             f"Commit {m['commit']}; {m['cores']} cores ({m['machine']}), GPU: {m['gpu']}; Python {m['python']}, "
             f"Docker engine {m['docker']}. Load average (1, 5, 15 min) before {m['load_before']}, after "
             f"{m['load_after']}. Took {results['seconds']:.0f} s.", "",
             "## 1. The pure core (load + check + render + plan)", "", *core_md(results["core"]), "",
             "![the pure core's time against providers](bench-core.png)", "",
             "## 2-3. llm-gitops apply vs docker-compose up -d", "", *compose_md(results["compose"]), "",
             "## 4-5. The controller (llm-gitops run)", "", *loop_md(results["loop"]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / ".bench")
    ap.add_argument("--quick", action="store_true", help="few runs and a short rest window: checks the scripts, "
                    "not numbers to quote")
    opts = ap.parse_args(argv)
    out = opts.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    results: dict[str, Any] = {"meta": meta()}
    quick = opts.quick
    run("bench_core.py", *(["10", "100", "1000"] if quick else []), "--json", str(out / "core.json"),
        "--plot", str(out / "bench-core.png"))
    run("bench_compose.py", "--json", str(out / "compose.json"),
        *(["--noop-runs", "2", "--change-runs", "2", "--gateway-runs", "1"] if quick else []))
    run("bench_loop.py", "--json", str(out / "loop.json"),
        *(["--commits", "2", "--rest", "5", "--settle", "1"] if quick else []))
    for part in ("core", "compose", "loop"):
        results[part] = json.loads((out / f"{part}.json").read_text())
    results["meta"]["load_after"] = _load()
    results["seconds"] = round(time.monotonic() - t0, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report(results)
    (out / "report.md").write_text(text)
    print("\n" + text)
    print(f"bench: {out / 'results.json'}, {out / 'report.md'}, {out / 'bench-core.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
