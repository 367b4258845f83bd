"""`make bench`, part 1: the pure core at scale. load + check + render (+ plan against
itself) for N providers with 5 models each; prints the median of several runs per size, the
cost per provider and how linear the growth is, and with --json/--plot writes the numbers and
the curve (a PNG, with a linear reference: the per-provider cost at the largest size times N).
Each size is also run with Python's cyclic garbage collector off ("gc off", 3 runs): what
remains is the code's own growth, and the difference is what the collector adds (it scans a
heap that grows with the spec).

    python scripts/bench_core.py [SIZE ...] [--json FILE] [--plot FILE.png]

Every provider has 5 models. Providers alternate between external vLLM servers, Ollama and
llama.cpp containers (each on a GPU id of its own) and remote openai_compatible APIs; every
provider gets a port of its own and a fallback chain, so every rule and render path works.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from controller.cli import tune_gc
from controller.plan import actual_from, plan, spec_changes
from controller.render import render
from controller.review import review
from controller.spec import load_files

SIZES = [10, 100, 1000, 5000]


def spec_files(n: int) -> dict[str, str]:
    providers: dict[str, dict[str, object]] = {}
    chains: dict[str, dict[str, list[str]]] = {}
    for i in range(n):
        kind = ("vllm", "ollama", "llama_cpp", "openai_compatible")[i % 4]
        models = [f"p{i}-m{j}" for j in range(5)]
        entry: dict[str, object] = {"type": kind, "base_url": f"http://127.0.0.1:{10000 + i}",
                                    "models": [{"name": m, "context_length": 4096, "size": "7B"} for m in models],
                                    "description": f"provider {i}"}
        if kind == "openai_compatible":
            entry["env_var"] = "REMOTE_KEY"
        elif kind != "vllm":  # a vLLM container serves one model: these are vLLM servers run elsewhere
            entry["container"] = {"image": f"example/{kind}:1.0", "args": ["--flag", str(i)], "gpus": [i]}
        providers[f"p{i}"] = entry
        chains[models[0]] = {"chain": [f"p{(i + 1) % n}-m0"]} if n > 1 else {"chain": []}
    chains = {k: v for k, v in chains.items() if v["chain"] and v["chain"][0] != k}
    return {"providers.yaml": yaml.safe_dump({"providers": providers}),
            "model-mappings.yaml": yaml.safe_dump({"fallback_chains": chains}),
            "stack.yaml": yaml.safe_dump({"name": "bench"})}


def once(files: dict[str, str]) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    loaded = load_files(files)
    spec = loaded.require()
    t1 = time.perf_counter()
    desired = render(spec)
    t2 = time.perf_counter()
    review(plan(desired, actual_from(desired), changes=spec_changes(loaded.raw, loaded.raw)), desired, desired)
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


def measure(sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        files = spec_files(n)
        runs = 7 if n <= 1000 else 3
        gc.collect()
        samples = [once(files) for _ in range(runs)]
        gc.collect()
        gc.disable()
        try:
            off = statistics.median(sum(once(files)) for _ in range(3))
        finally:
            gc.enable()
        med = [statistics.median(s[i] for s in samples) for i in range(3)]
        total = statistics.median(sum(s) for s in samples)
        rows.append({"providers": n, "models": 5 * n, "runs": runs, "load_check_s": med[0], "render_s": med[1],
                     "plan_s": med[2], "total_s": total, "per_provider_ms": 1000 * total / n,
                     "total_gc_off_s": off, "per_provider_gc_off_ms": 1000 * off / n})
        print(f"{n:>9} {5 * n:>7} {med[0]:>11.3f} {med[1]:>8.3f} {med[2]:>8.3f} {total:>8.3f} {off:>8.3f}", flush=True)
    return rows


def linearity(rows: list[dict[str, Any]], key: str = "total_s") -> dict[str, Any]:
    """The exponent k of total ~ N^k, fitted by least squares on log-log over the sizes of at
    least 100 providers (below, fixed costs dominate); 1.0 is linear. And the per-provider cost
    at the largest size over the one at 1,000 (or at the second largest size)."""
    big = [r for r in rows if r["providers"] >= 100] or rows
    xs = [math.log(r["providers"]) for r in big]
    ys = [math.log(r[key]) for r in big]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    k = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 1.0
    ref = next((r for r in rows[:-1] if r["providers"] == 1000), rows[-2] if len(rows) > 1 else rows[-1])
    return {"exponent": round(k, 3), "fitted_sizes": [r["providers"] for r in big],
            "per_provider_ratio_largest_vs_ref": round(rows[-1][key] / ref[key] * ref["providers"] / rows[-1]["providers"], 3),
            "ref_providers": ref["providers"]}


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")   # no display: write the file only
    import matplotlib.pyplot as plt

    ns = [r["providers"] for r in rows]
    per = rows[-1]["total_s"] / rows[-1]["providers"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110, gridspec_kw={"width_ratios": [3, 2]})
    for key, label in (("load_check_s", "load + check"), ("render_s", "render"), ("plan_s", "plan"),
                       ("total_s", "total")):
        ax.plot(ns, [r[key] for r in rows], marker="o", linewidth=2.2 if key == "total_s" else 1.2, label=label)
    ax.plot(ns, [r["total_gc_off_s"] for r in rows], marker=".", linestyle=":", color="C3",
            label="total, garbage collector off")
    ax.plot(ns, [per * n for n in ns], linestyle="--", color="grey",
            label=f"linear reference: {1000 * per:.2f} ms x N")
    ax.axhline(1.0, color="red", linewidth=0.8, linestyle=":", label="1 s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("providers (5 models each)")
    ax.set_ylabel("seconds (median)")
    ax.set_title("load + check + render + plan")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    # Linear growth is a flat line here: the cost of one provider does not depend on how many there are.
    ax2.plot(ns, [r["per_provider_ms"] for r in rows], marker="o", color="C3", linewidth=2.2, label="total")
    ax2.plot(ns, [r["per_provider_gc_off_ms"] for r in rows], marker=".", linestyle=":", color="C3",
             label="total, garbage collector off")
    ax2.legend(fontsize=8)
    ax2.set_xscale("log")
    ax2.set_ylim(0, max(r["per_provider_ms"] for r in rows) * 1.3)
    ax2.set_xlabel("providers (5 models each)")
    ax2.set_ylabel("ms per provider (median total / N)")
    ax2.set_title("cost per provider (flat = linear)")
    ax2.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sizes", nargs="*", type=int, default=SIZES)
    ap.add_argument("--json", type=Path, help="write the numbers here")
    ap.add_argument("--plot", type=Path, help="write the curve here (PNG; needs matplotlib: pip install -e .[bench])")
    opts = ap.parse_args(argv)
    tune_gc()  # as the llm-gitops command does
    print(f"{'providers':>9} {'models':>7} {'load+check':>11} {'render':>8} {'plan':>8} {'total':>8} {'gc off':>8}"
          "  (median s)")
    rows = measure(opts.sizes)
    lin, lin_off = linearity(rows), linearity(rows, "total_gc_off_s")
    print("per provider: " + ", ".join(f"{r['per_provider_ms']:.3f} ms at {r['providers']}" for r in rows))
    for label, fit in (("growth", lin), ("growth, gc off", lin_off)):
        print(f"{label}: total ~ N^{fit['exponent']} (fitted on {fit['fitted_sizes']}; 1.0 is linear); per-provider "
              f"cost at {rows[-1]['providers']} is {fit['per_provider_ratio_largest_vs_ref']}x the one at "
              f"{fit['ref_providers']}")
    if opts.json:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps({"sizes": rows, "linearity": lin, "linearity_gc_off": lin_off}, indent=2)
                             + "\n")
    if opts.plot:
        plot(rows, opts.plot)
        print(f"plot: {opts.plot}")


if __name__ == "__main__":
    main()
