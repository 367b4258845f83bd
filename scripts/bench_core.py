"""`make bench`: the pure core at scale. load + check + render (+ plan against itself) for
N providers with 5 models each; prints the median of several runs per size.

Every provider has 5 models. Providers alternate between external vLLM servers, Ollama and
llama.cpp containers (each on a GPU id of its own) and remote openai_compatible APIs; every
provider gets a port of its own and a fallback chain, so every rule and render path works.
"""

from __future__ import annotations

import statistics
import sys
import time

import yaml

from controller.cli import tune_gc
from controller.plan import actual_from, plan, spec_changes
from controller.render import render
from controller.review import review
from controller.spec import load_files

SIZES = [int(a) for a in sys.argv[1:]] or [10, 100, 1000, 5000]


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


def main() -> None:
    tune_gc()  # as the llm-gitops command does
    print(f"{'providers':>9} {'models':>7} {'load+check':>11} {'render':>8} {'plan':>8} {'total':>8}  (median s)")
    for n in SIZES:
        files = spec_files(n)
        runs = 7 if n <= 1000 else 3
        samples = [once(files) for _ in range(runs)]
        med = [statistics.median(s[i] for s in samples) for i in range(3)]
        models = 5 * n
        print(f"{n:>9} {models:>7} {med[0]:>11.3f} {med[1]:>8.3f} {med[2]:>8.3f} {sum(med):>8.3f}")


if __name__ == "__main__":
    main()
