"""The soak test of issue 6: a long run of random commits, valid and invalid, applied by the
running loop (`llm-gitops run` as its own process) on a stub stack, then the end state checked
against what the last good commit renders.

Where it sits: a real-engine test (marker `docker`) on top of `engine.lab` (the stack, the
repo, the CLI) and `engine.loop_lab` (the controller process and its JSON log). Everything it
compares against is computed here from the real git commits and the real engine; the product
is only asked what it did (history, record, /status), never what it should have done.

The run. A seeded RNG (the seed is printed; `SOAK_SEED` overrides it) draws `SOAK_COMMITS`
(default 100) commits after a first good one. Each commit is one kind of change, of one of
three families:

- valid: a provider's args, a model name added or removed (llama.cpp and Ollama providers), a
  provider added or removed, a fallback chain set or dropped, only the gateway config
  (`router_settings`). Expected outcome: `applied`.
- spec-invalid: a YAML syntax error, an unknown key, a duplicate port, a fallback to an
  unknown model; half of them also carry a valid change that must not land. Expected:
  `invalid`, quarantined, nothing changed.
- runtime-invalid: a provider (new or existing) that never gets healthy (`STUB_UNHEALTHY`,
  a 2 s startup timeout) or exits on start (`STUB_EXIT_AFTER=0`); half of them also carry a
  valid change. Expected: `failed`, quarantined, rolled back to the last good commit.

Every commit builds on the last valid one the generator made. Most are committed one at a
time, waiting (bounded) until the history has an entry for it. Some (`SOAK_BURST_P`, default
0.15 per step) start a burst: 2 to 5 commits pushed back to back, only the last one waited
for, so the loop has to skip to the newest head and cancel waits that a newer commit made moot.

Definitions the checks use:

- A commit is *taken* when the history (`history.jsonl`) has an entry for it. Every commit
  pushed alone and the last commit of every burst must be taken; a burst's inner commits may
  be passed over (the loop serves the newest head it sees).
- *History complete and consistent*: every taken commit has one entry, and it is its family's
  outcome, except that a taken inner commit of a burst may end `interrupted` (a newer commit
  cancelled its wait) when its kind has waits (valid and runtime-invalid). Entries appear in
  commit order. A `failed` entry says it rolled back, to the last good commit at the time.
  Every pass the log ends without `quiet` has its entry, in the same order (no record lost).
  The one other entry allowed is a *repair*: after an interrupted pass, when the next head is
  spec-invalid, a `skipped` drift pass on that head that puts back the last good commit
  (what the interrupted pass had started goes). Any other second entry means a pass left the
  stack away from its commit and a later one had to repair it.
- *The last good commit* is the last taken commit whose entry is `applied`; it must be the last
  taken valid commit that was not interrupted.

After every waited-for commit, once the loop runs no pass: an invalid or failed commit is in
the record's quarantine, the record's last good commit is the history's, and the stack is the
last good commit (the end-state check below). At the end, the same and more: the containers
of the state dir (by its label, any stack) are exactly what the last good commit renders, all
running, each with its image, command, environment, spec hash and restart policy; no canary,
nothing set aside; the gateway's config file is byte for byte the rendered one and the
gateway lists exactly its public names; every provider answers /health; `plan --live`
against it is empty; the controller is alive, idle, and its /status names the last good
commit.

Runtime: about 4 to 5 minutes for 100 commits on this project's 2-core machines (most of it the
health gates, 3 samples 0.5 s apart, and the canary of config changes).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import random
import statistics
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from engine.lab import Lab, free_port, stub_provider, wait_for
from engine.loop_lab import Controller

pytestmark = pytest.mark.docker

VALID, SPEC_INVALID, RUNTIME_INVALID = "valid", "spec-invalid", "runtime-invalid"
EXPECTED = {VALID: "applied", SPEC_INVALID: "invalid", RUNTIME_INVALID: "failed"}

# kind -> (family, weight)
KINDS: dict[str, tuple[str, int]] = {
    "args": (VALID, 12), "model-add": (VALID, 6), "model-remove": (VALID, 5), "provider-add": (VALID, 6),
    "provider-remove": (VALID, 5), "fallback": (VALID, 8), "gateway-config": (VALID, 6),
    "yaml-syntax": (SPEC_INVALID, 5), "unknown-key": (SPEC_INVALID, 5), "duplicate-port": (SPEC_INVALID, 5),
    "unknown-fallback": (SPEC_INVALID, 5),
    "never-healthy": (RUNTIME_INVALID, 8), "exits-on-start": (RUNTIME_INVALID, 8),
}
MIN_PROVIDERS, MAX_PROVIDERS = 2, 5
RECORD_TIMEOUT_S = 90.0     # one commit, from the commit to its history entry
SOAK_DEADLINE_S = 900.0     # the whole run; a stuck loop fails it, it does not hang the suite


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw.strip() else default


# --------------------------------------------------------------------------- the commits


@dataclasses.dataclass
class Commit:
    index: int
    kind: str
    family: str
    note: str
    files: dict[str, str]
    sha: str = ""
    burst: int | None = None       # which burst it was pushed in (None: pushed alone)
    last_of_burst: bool = True
    pushed_at: float = 0.0
    recorded_after_s: float | None = None

    @property
    def must_be_taken(self) -> bool:
        return self.burst is None or self.last_of_burst


@dataclasses.dataclass
class Spec:
    """The three spec files as data (what the generator changes)."""

    providers: dict[str, Any]
    mappings: dict[str, Any]
    stack: dict[str, Any]

    def files(self) -> dict[str, str]:
        return {"providers.yaml": yaml.safe_dump({"providers": self.providers}, sort_keys=False),
                "model-mappings.yaml": yaml.safe_dump(self.mappings, sort_keys=False),
                "stack.yaml": yaml.safe_dump(self.stack, sort_keys=False)}

    def names(self) -> list[str]:
        """Every public name: each model of each provider (no renames in this stack)."""
        return [m["name"] for p in self.providers.values() for m in p["models"]]

    def chains(self) -> dict[str, Any]:
        return dict(self.mappings.setdefault("fallback_chains", {}))

    def forget(self, gone: set[str]) -> None:
        """Drop the fallback chains that named models now gone (keeps a valid change valid)."""
        chains = {}
        for name, body in self.chains().items():
            rest = [n for n in body["chain"] if n not in gone]
            if name not in gone and rest:
                chains[name] = {"chain": rest}
        self.mappings["fallback_chains"] = chains


def _port(provider: dict[str, Any]) -> int:
    return int(str(provider["base_url"]).rsplit(":", 1)[1])


class Generator:
    """Draws the commits. `good` is the last valid spec drawn; every commit starts from it."""

    def __init__(self, rng: random.Random, lab: Lab) -> None:
        self.rng, self.lab = rng, lab
        providers = {
            "alpha": stub_provider(lab.ports["alpha"], "m-alpha"),
            "beta": stub_provider(lab.ports["beta"], "m-beta", type_="llama_cpp"),
            "gamma": stub_provider(lab.ports["gamma"], "m-gamma", type_="ollama"),
        }
        self.good = Spec(providers, {"fallback_chains": {"m-alpha": {"chain": ["m-beta"]}}}, copy.deepcopy(lab.stack))
        self.serial = 0

    def _next(self) -> int:
        self.serial += 1
        return self.serial

    def first(self) -> Commit:
        return Commit(0, "first", VALID, "three stub providers, a fallback", self.good.files())

    def draw(self, index: int) -> Commit:
        kind = self._kind(lambda k: True)
        family = KINDS[kind][0]
        spec = copy.deepcopy(self.good)
        if family == VALID:
            note = self._valid(kind, spec)
            self.good = spec
            return Commit(index, kind, family, note, spec.files())
        notes = []
        if self.rng.random() < 0.5:  # a valid change rides along, and must not land either
            extra = self._kind(lambda k: KINDS[k][0] == VALID)
            notes.append(f"{extra}: {self._valid(extra, spec)}")
        if family == SPEC_INVALID:
            files, note = self._spec_invalid(kind, spec)
        else:
            note = self._runtime_invalid(kind, spec)
            files = spec.files()
        return Commit(index, kind, family, "; ".join([note, *notes]), files)

    def _kind(self, allowed: Callable[[str], bool]) -> str:
        kinds = [k for k in KINDS if allowed(k) and self._applicable(k)]
        return self.rng.choices(kinds, weights=[KINDS[k][1] for k in kinds])[0]

    def _applicable(self, kind: str) -> bool:
        n = len(self.good.providers)
        if kind == "model-add":
            return any(p["type"] != "vllm" for p in self.good.providers.values())
        if kind == "model-remove":
            return any(len(p["models"]) > 1 for p in self.good.providers.values())
        if kind == "provider-add":
            return n < MAX_PROVIDERS
        if kind == "provider-remove":
            return n > MIN_PROVIDERS
        return True

    def _pick(self, spec: Spec, where: Callable[[dict[str, Any]], bool] = lambda p: True) -> str:
        return self.rng.choice(sorted(k for k, p in spec.providers.items() if where(p)))

    # ------------------------------------------------------------------ valid

    def _valid(self, kind: str, spec: Spec) -> str:
        rng = self.rng
        if kind == "args":
            name = self._pick(spec)
            container = spec.providers[name]["container"]
            container["args"] = ["--seed", str(self._next())]
            return f"{name} args {container['args']}"
        if kind == "model-add":
            name = self._pick(spec, lambda p: p["type"] != "vllm")
            model = f"m-{name}-{self._next()}"
            spec.providers[name]["models"].append({"name": model, "context_length": 2048})
            return f"{name} serves {model} too"
        if kind == "model-remove":
            name = self._pick(spec, lambda p: len(p["models"]) > 1)
            models = spec.providers[name]["models"]
            gone = models.pop(rng.randrange(len(models)))["name"]
            spec.forget({gone})
            return f"{name} no longer serves {gone}"
        if kind == "provider-add":
            name = f"p{self._next()}"
            type_ = rng.choice(["vllm", "llama_cpp", "ollama"])
            spec.providers[name] = stub_provider(free_port(), f"m-{name}", type_=type_)
            return f"new {type_} provider {name}"
        if kind == "provider-remove":
            name = self._pick(spec)
            gone = {m["name"] for m in spec.providers.pop(name)["models"]}
            spec.forget(gone)
            return f"provider {name} removed"
        if kind == "fallback":
            names = spec.names()
            chains = spec.chains()
            if chains and rng.random() < 0.3:
                dropped = rng.choice(sorted(chains))
                del chains[dropped]
                spec.mappings["fallback_chains"] = chains
                return f"fallback chain of {dropped} dropped"
            head = rng.choice(names)
            others = [n for n in names if n != head]
            chain = rng.sample(others, k=min(len(others), rng.randint(1, 2)))
            if chains.get(head) == {"chain": chain}:
                chain = list(reversed(chain)) if len(chain) > 1 else []
            if not chain:
                chains.pop(head, None)
                spec.mappings["fallback_chains"] = chains
                return f"fallback chain of {head} dropped"
            chains[head] = {"chain": chain}
            spec.mappings["fallback_chains"] = chains
            return f"fallback chain {head} -> {chain}"
        if kind == "gateway-config":
            settings = spec.stack["gateway"].setdefault("router_settings", {})
            old = settings.get("num_retries")
            settings["num_retries"] = rng.choice([n for n in range(6) if n != old])
            return f"gateway router_settings.num_retries {old} -> {settings['num_retries']}"
        raise AssertionError(f"not a valid kind: {kind}")

    # ------------------------------------------------------------------ invalid

    def _spec_invalid(self, kind: str, spec: Spec) -> tuple[dict[str, str], str]:
        rng = self.rng
        if kind == "yaml-syntax":
            files = spec.files()
            name = rng.choice(sorted(files))
            if rng.random() < 0.5:
                files[name] += "broken: [unclosed\n"
                return files, f"{name}: an unclosed flow sequence"
            name = rng.choice(sorted(n for n, text in files.items() if "\n  " in text))
            files[name] = files[name].replace("\n  ", "\n\t", 1)
            return files, f"{name}: a tab in the indentation"
        if kind == "unknown-key":
            name = self._pick(spec)
            if rng.random() < 0.5:
                spec.providers[name]["stauts"] = "active"
                return spec.files(), f"{name}: unknown key `stauts`"
            spec.providers[name]["container"]["imagee"] = "llm-gitops-test/stub:1"
            return spec.files(), f"{name}.container: unknown key `imagee`"
        if kind == "duplicate-port":
            name = self._pick(spec)
            others = [k for k in spec.providers if k != name]
            taken = rng.choice([*others, "the gateway"])
            port = (_port(spec.providers[taken]) if taken != "the gateway"
                    else int(str(spec.stack["gateway"]["base_url"]).rsplit(":", 1)[1]))
            spec.providers[name]["base_url"] = f"http://127.0.0.1:{port}"
            return spec.files(), f"{name} on the port of {taken} ({port})"
        if kind == "unknown-fallback":
            head = rng.choice(spec.names())
            chains = spec.chains()
            chains[head] = {"chain": [f"no-such-model-{self._next()}"]}
            spec.mappings["fallback_chains"] = chains
            return spec.files(), f"fallback chain of {head} -> {chains[head]['chain']}"
        raise AssertionError(f"not a spec-invalid kind: {kind}")

    def _runtime_invalid(self, kind: str, spec: Spec) -> str:
        env = {"never-healthy": {"STUB_UNHEALTHY": "1"}, "exits-on-start": {"STUB_EXIT_AFTER": "0"}}[kind]
        if self.rng.random() < 0.5 or len(spec.providers) >= MAX_PROVIDERS + 1:
            name = self._pick(spec)
            container = spec.providers[name]["container"]
            container["env"] = {**container.get("env", {}), **env}
            container["startup_timeout_s"] = 2
            return f"{kind}: existing provider {name} gets {env}"
        name = f"p{self._next()}"
        type_ = self.rng.choice(["vllm", "llama_cpp", "ollama"])
        spec.providers[name] = stub_provider(free_port(), f"m-{name}", type_=type_, env=env, timeout=2)
        return f"{kind}: new {type_} provider {name} with {env}"


# --------------------------------------------------------------------------- reading what the loop did


def _history(lab: Lab) -> list[dict[str, Any]]:
    """history.jsonl as the state dir holds it (a torn line would be skipped, as `history` does)."""
    path = lab.state / "history.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _record(lab: Lab) -> dict[str, Any]:
    return dict(json.loads((lab.state / "record.json").read_text()))


def _wait_recorded(ctl: Controller, lab: Lab, sha: str, timeout: float) -> dict[str, Any]:
    def entry() -> dict[str, Any] | None:
        ctl._dead()  # the controller died: say so now, with its log
        found = [e for e in _history(lab) if e.get("commit") == sha]
        return found[-1] if found else None
    try:
        return dict(wait_for(entry, timeout=timeout, interval=0.1))
    except AssertionError:
        raise AssertionError(f"no history entry for {sha[:12]} within {timeout} s (the loop is stuck?); "
                             f"its log ends:\n{ctl.log_path.read_text()[-4000:]}") from None


# --------------------------------------------------------------------------- what the last good commit renders


_RENDERED: dict[tuple[str, str], Any] = {}


def _rendered(lab: Lab, sha: str) -> Any:
    """Desired state of `sha`, from the commit in git, with the spec hashes the controller
    computes (secret fingerprints from the state dir's key)."""
    key = (str(lab.state), sha)
    if key not in _RENDERED:
        _RENDERED[key] = _render_commit(lab, sha)
    return _RENDERED[key]


def _render_commit(lab: Lab, sha: str) -> Any:
    from controller.adapters import source, state
    from controller.render import render, with_fingerprints
    from controller.spec.load import load_files

    loaded = load_files(source.read_commit(source.open_repo(lab.repo.path), sha))
    assert loaded.spec is not None and not loaded.errors, [p.format() for p in loaded.errors]
    draft = render(loaded.spec)
    names = {n for c in draft.containers for n in c.secret_env}
    return with_fingerprints(draft, state.StateDir(lab.state).fingerprints(names, os.environ))


def _env_of(pairs: list[str] | None) -> dict[str, str]:
    return dict(p.split("=", 1) for p in pairs or [])


def _end_state_problems(lab: Lab, good: str) -> list[str]:
    """How the engine and the state dir differ from what `good` renders (empty: they agree)."""
    desired = _rendered(lab, good)
    problems: list[str] = []
    api = lab.engine.api
    mine = api.containers(all=True, filters={"label": f"llm-gitops.state-dir={lab.state.resolve()}"})
    by_stack = api.containers(all=True, filters={"label": f"llm-gitops.stack={lab.name}"})
    if {c["Id"] for c in by_stack} - {c["Id"] for c in mine}:
        problems.append("containers of the stack that the state dir did not make")
    found = {c["Names"][0].lstrip("/"): api.inspect_container(c["Id"]) for c in mine}
    wanted = {c.name: c for c in desired.containers}
    if sorted(found) != sorted(wanted):
        problems.append(f"containers {sorted(found)}, rendered {sorted(wanted)} "
                        f"(orphans: {sorted(set(found) - set(wanted))}, missing: {sorted(set(wanted) - set(found))})")
    images: dict[str, dict[str, Any]] = {}
    for name, spec in wanted.items():
        info = found.get(name)
        if info is None:
            continue
        image = images.setdefault(spec.image, api.inspect_image(spec.image)["Config"])
        cmd = list(spec.command) or image.get("Cmd")
        env = {**_env_of(image.get("Env")), **spec.env, **{n: os.environ[n] for n in spec.secret_env}}
        labels = info["Config"]["Labels"]
        seen = {"image": info["Config"]["Image"], "cmd": info["Config"]["Cmd"], "env": _env_of(info["Config"]["Env"]),
                "spec-hash": labels.get("llm-gitops.spec-hash"), "running": info["State"]["Running"],
                "restart": info["HostConfig"]["RestartPolicy"]["Name"]}
        want = {"image": spec.image, "cmd": cmd, "env": env, "spec-hash": spec.spec_hash, "running": True,
                "restart": "unless-stopped"}
        for key, value in want.items():
            if seen[key] != value:
                a, b = ((_no_secrets(seen[key], spec.secret_env), _no_secrets(value, spec.secret_env))
                        if key == "env" else (seen[key], value))
                problems.append(f"{name}: {key} is {a!r}, rendered {b!r}")
    live = lab.state / "gateway" / "config.yaml"
    if live.read_text() != desired.config_text:
        problems.append("the gateway's config file is not the rendered config of the last good commit")
    kept = sorted(p.name for p in lab.state.glob("gateway-config.edited-*"))
    if kept:  # the controller took a config file it wrote itself for a hand edit
        problems.append(f"copies of a \"hand-edited\" gateway config: {kept}")
    listed = _gateway_models(lab)
    if listed != desired.public_models:
        problems.append(f"the gateway lists {listed}, rendered {desired.public_models}")
    for spec in desired.containers:
        if spec.component == "provider" and not _healthy(spec.port):
            problems.append(f"{spec.name} does not answer /health on 127.0.0.1:{spec.port}")
    return problems


def _no_secrets(env: dict[str, str], secret_env: tuple[str, ...]) -> dict[str, str]:
    """An environment to print in a failure: secret values left out."""
    return {k: ("<secret>" if k in secret_env else v) for k, v in env.items()}


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 only, never a proxy
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with opener.open(req, timeout=5) as resp:
            return resp.status, resp.read()
    except OSError as exc:
        return getattr(exc, "code", 0) or 0, b""


def _gateway_models(lab: Lab) -> list[str]:
    code, body = _get(lab.ports["gateway"], "/v1/models", {"Authorization": f"Bearer {lab.master_key}"})
    return sorted(m["id"] for m in json.loads(body)["data"]) if code == 200 else [f"HTTP {code}"]


def _healthy(port: int) -> bool:
    return _get(port, "/health")[0] == 200


# --------------------------------------------------------------------------- the test


@dataclasses.dataclass
class Run:
    """One soak: what was drawn and pushed, and what the checks along the way found."""

    seed: int
    lab: Lab
    rng: random.Random
    gen: Generator
    t0: float = dataclasses.field(default_factory=time.monotonic)
    commits: list[Commit] = dataclasses.field(default_factory=list)
    anomalies: list[str] = dataclasses.field(default_factory=list)   # per-step findings, reported at the end
    checks: list[float] = dataclasses.field(default_factory=list)    # seconds settling and checking per record


def test_soak_random_commits_through_the_running_loop(lab: Lab, record_property: Any) -> None:
    seed = _env_int("SOAK_SEED", random.SystemRandom().randrange(2**32))
    count = _env_int("SOAK_COMMITS", 100)
    burst_p = _env_float("SOAK_BURST_P", 0.15)
    print(f"\nsoak: SOAK_SEED={seed} SOAK_COMMITS={count} SOAK_BURST_P={burst_p} (rerun with the same seed "
          "to draw the same commits)", flush=True)
    record_property("soak_seed", seed)
    rng = random.Random(seed)
    run = Run(seed, lab, rng, Generator(rng, lab))
    lab.stack = run.gen.good.stack
    first = run.gen.first()
    first.sha = lab.repo.commit(first.files, "soak 0: first")
    run.commits.append(first)
    commits = run.commits
    with Controller(lab, "--drift-interval-s", "3") as ctl:  # drift checks run all along, and must find nothing
        _wait_recorded(ctl, lab, first.sha, RECORD_TIMEOUT_S)
        try:
            _soak(run, ctl, count=count, burst_p=burst_p)
        except AssertionError:  # stopped early (stuck, dead): still say how far it got
            print(_summary(run, _history(lab), "?" * 12, 0), flush=True)
            raise

        # quiet again: the last record is in, no pass is running and none is due for a failure
        wait_for(lambda: _loop_state(lab).get("state") == "idle"
                 and _loop_state(lab).get("failures_in_a_row") == 0, timeout=60)
        history = _history(lab)
        good, repairs, problems = _history_problems(commits, history, ctl)
        problems = run.anomalies + problems
        summary = _summary(run, history, good, repairs)
        print(summary, flush=True)
        record_property("soak_summary", summary)
        assert not problems, "the soak found:\n  " + "\n  ".join(problems) + "\n" + summary

        end = _end_state_problems(lab, good)
        assert not end, f"the end state is not the last good commit {good[:12]}:\n  " + "\n  ".join(end)
        code, out, err = lab.cli("plan", "--live", "--repo", str(lab.repo.path), "--head", good,
                                 "--state-dir", str(lab.state), "--detailed-exitcode")
        assert code == 0, f"plan --live against {good[:12]} is not empty (exit {code}):\n{out}{err}"

        assert ctl.proc.poll() is None, "the controller is not running"
        code, _ = ctl.request("/healthz")
        assert code == 200
        status = ctl.status()
        assert status["last_good"] == good and status["last_applied"] == good, status
        assert status["drift"] == [] and status["controller"]["source_error"] is None, status
        assert status["controller"]["seen_head"] == commits[-1].sha, status["controller"]
        assert not ctl.events("flapping")
        assert len(ctl.events("drift_repaired")) == repairs  # only after an interrupted pass and an invalid head
        assert ctl.terminate() == 0


def _soak(run: Run, ctl: Controller, *, count: int, burst_p: float) -> None:
    """Draw, push and wait for `count` commits, checking after each waited-for one."""
    lab, rng, gen = run.lab, run.rng, run.gen
    index, burst = 1, 0
    while index <= count:
        assert time.monotonic() - run.t0 < SOAK_DEADLINE_S, f"the soak ran past {SOAK_DEADLINE_S} s"
        size = rng.randint(2, 5) if rng.random() < burst_p else 1
        size = min(size, count - index + 1)
        group = [gen.draw(index + i) for i in range(size)]
        if size > 1:
            burst += 1
        for i, c in enumerate(group):
            if size > 1:
                c.burst, c.last_of_burst = burst, i == size - 1
                # land at different moments of the pass before, or before the loop saw it at all
                time.sleep(rng.choice([0.0, rng.uniform(0.05, 0.3), rng.uniform(0.3, 1.5)]))
            c.pushed_at = time.monotonic()
            c.sha = lab.repo.commit(c.files, f"soak {c.index}: {c.kind}: {c.note}")
            run.commits.append(c)
        last = group[-1]
        entry = _wait_recorded(ctl, lab, last.sha, RECORD_TIMEOUT_S)
        last.recorded_after_s = round(time.monotonic() - last.pushed_at, 2)
        t_check = time.monotonic()
        _wait_settled(ctl, lab)
        run.anomalies += _step_problems(lab, last, entry)
        run.checks.append(time.monotonic() - t_check)
        index += size


def _step_problems(lab: Lab, c: Commit, entry: dict[str, Any]) -> list[str]:
    """Right after a waited-for commit got its entry and the loop settled: the record agrees
    (an invalid or failed commit is quarantined), and what runs is the last good commit."""
    rec = _record(lab)
    name = f"after #{c.index} {c.sha[:12]} ({c.family} {c.kind}, {entry.get('outcome')})"
    out = []
    if c.family != VALID and c.sha not in rec["quarantined"]:
        out.append(f"{name}: not quarantined")
    applied = [e for e in _history(lab) if e.get("outcome") == "applied"]
    good = str(applied[-1]["commit"]) if applied else None
    if rec["last_good"] != good:
        out.append(f"{name}: record.json's last_good is {str(rec['last_good'])[:12]}, "
                   f"the history's last applied {str(good)[:12]}")
    if good is not None:
        out += [f"{name}: {p}" for p in _end_state_problems(lab, good)]
    return out


def _loop_state(lab: Lab) -> dict[str, Any]:
    """loop.json: what the running loop says it does (written when that changes)."""
    try:
        return dict(json.loads((lab.state / "loop.json").read_text()))
    except (OSError, ValueError):
        return {}


def _wait_settled(ctl: Controller, lab: Lab, timeout: float = 60) -> None:
    """Until the loop runs no pass (idle, or waiting out a backoff whose pass changes nothing
    after a rollback). A pass it starts on its own right after a record (the last good commit
    put back after an interrupted pass) keeps it `applying` until that pass ends too."""
    def settled() -> bool:
        ctl._dead()
        st = _loop_state(lab)
        return st.get("state") in ("idle", "backoff") and st.get("passing") is None
    wait_for(settled, timeout=timeout, interval=0.05)


def _history_problems(commits: list[Commit], history: list[dict[str, Any]],
                      ctl: Controller) -> tuple[str, int, list[str]]:
    """(the last good commit, how many repair entries, what breaks the module docstring's
    definitions)."""
    problems: list[str] = []
    index = {c.sha: c for c in commits}
    repairs = _allowed_repairs(history, index)
    by_sha: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for pos, e in enumerate(history):
        by_sha.setdefault(str(e.get("commit")), []).append((pos, e))
    for sha in by_sha:
        if sha not in index:
            problems.append(f"a history entry for {sha[:12]}, which the soak never committed")
    good: str | None = None
    last_final: Commit | None = None   # the last taken valid commit that was not interrupted
    for c in commits:
        entries = by_sha.get(c.sha, [])
        c_name = f"#{c.index} {c.sha[:12]} ({c.family} {c.kind}: {c.note})"
        if not entries:
            if c.must_be_taken:
                problems.append(f"{c_name}: never taken (no history entry)")
            continue
        (_, e), rest = entries[0], entries[1:]
        allowed = {EXPECTED[c.family]}
        if not c.must_be_taken and c.family != SPEC_INVALID:
            allowed.add("interrupted")
        if e.get("outcome") not in allowed:
            problems.append(f"{c_name}: {e.get('outcome')} ({e.get('message')}), expected {sorted(allowed)}")
        if e.get("outcome") == "failed":
            rb = e.get("rollback") or {}
            if not rb.get("ok") or rb.get("to") != good:
                problems.append(f"{c_name}: failed without rolling back to the last good commit "
                                f"{str(good)[:12]}: {e.get('message')}")
        if e.get("outcome") == "applied":
            good = c.sha
        if c.family == VALID and e.get("outcome") != "interrupted":
            last_final = c
        for pos, extra in rest:
            if pos not in repairs or extra.get("served") != good:
                problems.append(f"{c_name}: a second entry, {extra.get('outcome')} ({extra.get('trigger')}): "
                                f"{extra.get('message')}")
    order = [index[str(e.get("commit"))].index for e in history if str(e.get("commit")) in index]
    if order != sorted(order):
        problems.append(f"history out of commit order: {order}")
    # the log's passes that wrote something, in order, are the history's entries: none lost
    ended = [(str(e.get("commit")), e.get("outcome")) for e in ctl.passes() if not e.get("quiet")]
    recorded = [(str(e.get("commit"))[:12], e.get("outcome")) for e in history]
    if ended != recorded:
        problems.append(f"the log's passes {ended} are not the history's entries {recorded}")
    if good is None or last_final is None or last_final.sha != good:
        problems.append(f"the last applied commit {str(good)[:12]} is not the last valid commit the loop took "
                        f"({last_final.sha[:12] if last_final else None})")
    return str(good), len(repairs), problems


def _allowed_repairs(history: list[dict[str, Any]], index: dict[str, Commit]) -> set[int]:
    """Positions of the entries that put back the last good commit after an interrupted pass
    whose newer commit(s) were invalid: a `skipped` drift pass on that invalid head."""
    allowed, unfinished = set(), False
    for pos, e in enumerate(history):
        outcome, c = e.get("outcome"), index.get(str(e.get("commit")))
        if outcome == "interrupted":
            unfinished = True
        elif outcome == "invalid":
            continue
        elif (outcome == "skipped" and e.get("trigger") == "drift" and unfinished and c is not None
              and c.family == SPEC_INVALID):
            allowed.add(pos)
            unfinished = False
        else:
            unfinished = False
    return allowed


def _then_invalid(history: list[dict[str, Any]]) -> int:
    return sum(1 for a, b in zip(history, history[1:], strict=False)
               if a.get("outcome") == "interrupted" and b.get("outcome") == "invalid")


def _summary(run: Run, history: list[dict[str, Any]], good: str, repairs: int) -> str:
    soaked, checks, duration = run.commits[1:], run.checks, time.monotonic() - run.t0
    families = Counter(c.family for c in soaked)
    kinds = Counter(c.kind for c in soaked)
    outcomes = Counter(str(e.get("outcome")) for e in history)
    in_bursts = [c for c in soaked if c.burst is not None]
    taken = {str(e.get("commit")) for e in history}
    latency: dict[str, list[float]] = {}
    for c in soaked:
        if c.burst is None and c.recorded_after_s is not None:
            latency.setdefault(c.family, []).append(c.recorded_after_s)
    lat = ", ".join(f"{f} median {statistics.median(v):.2f} s max {max(v):.2f} s" for f, v in sorted(latency.items()))
    return "\n".join([
        f"soak summary (SOAK_SEED={run.seed}): {len(soaked)} commits after the first in {duration:.1f} s",
        f"  by family: {dict(sorted(families.items()))}",
        f"  by kind:   {dict(sorted(kinds.items()))}",
        (f"  bursts: {len({c.burst for c in in_bursts})} with {len(in_bursts)} commits, "
         f"{sum(1 for c in in_bursts if c.sha not in taken)} of them passed over by the loop"),
        f"  history: {len(history)} entries, outcomes {dict(sorted(outcomes.items()))}",
        (f"  interrupted passes followed by an invalid head: {_then_invalid(history)}, "
         f"the last good commit put back after them: {repairs}"),
        f"  commit to record (pushed alone): {lat}",
        f"  convergence checks after each record: {len(checks)}, {sum(checks):.1f} s in all",
        f"  last good commit: {good[:12]}",
    ])

