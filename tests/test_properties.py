"""Property tests (hypothesis): the loader never raises anything but our own errors on
arbitrary input, valid specs always render (and LiteLLM accepts them), rendering is
deterministic and does not depend on the order of providers in the file."""

from __future__ import annotations

import litellm
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.render import render
from controller.spec import FILES, load_files
from test_render import router_kwargs

VOCAB = ["providers", "type", "status", "base_url", "models", "name", "container", "image", "args", "env",
         "gpus", "exact_matches", "provider", "fallback_chains", "chain", "capabilities", "preferred_models",
         "load_balancing", "weight", "gateway", "cache", "policy", "router_settings", "vllm", "ollama",
         "llama_cpp", "active", "disabled", "http://127.0.0.1:8001", "secret_env", "volumes", "special_cases"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(VOCAB))
keys = st.one_of(st.sampled_from(VOCAB), st.text(max_size=8), st.integers(-3, 3))
trees = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(keys, inner, max_size=5)), max_leaves=25)
SLOW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_loaded(files: dict[str, str]) -> None:
    loaded = load_files(files)  # must not raise
    for problem in loaded.problems:
        assert problem.file in FILES and problem.subject and problem.message
    if loaded.spec is not None and not loaded.errors:
        render(loaded.spec)  # whatever passes the rules must render


@SLOW
@given(st.sampled_from(sorted(FILES)), st.text(max_size=300))
def test_loader_survives_arbitrary_text(filename: str, text: str) -> None:
    files = {"providers.yaml": "providers: {}\n", filename: text}
    _check_loaded(files)


@SLOW
@given(st.dictionaries(st.sampled_from(sorted(FILES)), trees, min_size=1))
def test_loader_survives_arbitrary_yaml_structures(data: dict[str, object]) -> None:
    files = {name: yaml.safe_dump(value, allow_unicode=True) for name, value in data.items()}
    _check_loaded(files)


# --------------------------------------------------------------------------- valid specs

names = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
model_names = st.from_regex(r"[a-z][a-z0-9.:/-]{0,10}", fullmatch=True)


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, str]:
    """A valid spec with every feature: distinct ports, one vLLM per GPU per host, Ollama
    options (nested), exact_matches renames, load balancing, chains, capabilities."""
    provider_names = draw(st.lists(names.filter(lambda n: n not in ("gateway", "cache")),
                                   min_size=1, max_size=6, unique=True))
    all_models = draw(st.lists(model_names, min_size=len(provider_names) * 2, max_size=len(provider_names) * 2,
                               unique=True))
    providers: dict[str, dict[str, object]] = {}
    served: list[tuple[str, str]] = []  # (provider, model) of active providers
    for i, pname in enumerate(provider_names):
        kind = draw(st.sampled_from(["vllm", "ollama", "llama_cpp", "openai_compatible", "openai"]))
        models: list[object] = list(all_models[2 * i: 2 * i + (1 if kind == "vllm" else draw(st.integers(1, 2)))])
        status = draw(st.sampled_from(["active", "active", "active", "disabled"]))
        if kind == "ollama" and draw(st.booleans()):
            models = [{"name": models[0], "options": {"num_ctx": 4096, "stop": ["<|eot_id|>", "###"]}}, *models[1:]]
        entry: dict[str, object] = {"type": kind, "status": status, "models": models}
        if kind in ("vllm", "ollama", "llama_cpp"):
            entry["base_url"] = f"http://127.0.0.1:{9000 + i}"
            if draw(st.booleans()):
                container: dict[str, object] = {"image": f"example/{kind}:1.{i}", "args": draw(st.lists(
                    st.sampled_from(["--verbose", "-c", "4096", "--flag=x"]), max_size=3))}
                if kind == "vllm":
                    container["args"] = ["--model", all_models[2 * i], *container["args"]]  # type: ignore[misc]
                    if draw(st.booleans()):
                        container["gpus"] = [draw(st.integers(0, 1))]
                        container["host"] = f"gpu-{i}"  # each on its own host: never two per GPU
                        # reachable from the gateway's host: an RFC 5737 documentation address
                        # (configuration text only; no test sends traffic anywhere)
                        entry["base_url"] = f"http://192.0.2.{i + 1}:{9000 + i}"
                entry["container"] = container
        elif kind == "openai_compatible":
            entry["base_url"] = "https://api.example.invalid/v1"
            entry["env_var"] = "REMOTE_KEY"
        else:
            entry["env_var"] = "OPENAI_API_KEY"
        providers[pname] = entry
        if status == "active":
            served += [(pname, m if isinstance(m, str) else m["name"]) for m in models]  # type: ignore[index]
    mappings: dict[str, object] = {}
    public = [m for _, m in served]
    if served and draw(st.booleans()):
        pname, model = served[0]
        mappings["exact_matches"] = {"renamed-x": {"provider": pname, "backend_model": model}}
        public = ["renamed-x" if m == model else m for m in public]
    if len(served) >= 2 and draw(st.booleans()):
        mappings["load_balancing"] = {"balanced-x": {"providers": [
            {"provider": p, "model": m, "weight": draw(st.integers(1, 5))} for p, m in served[:2]]}}
        public.append("balanced-x")
    if len(public) >= 2 and draw(st.booleans()):
        chain = draw(st.lists(st.sampled_from(public), min_size=0, max_size=3, unique=True))
        mappings["fallback_chains"] = {public[0]: {"chain": chain}, "default": {"chain": [public[-1]]}}
    if public and draw(st.booleans()):
        mappings["capabilities"] = {"cap-x": {"preferred_models": draw(st.lists(st.sampled_from(public),
                                                                               min_size=1, unique=True))}}
    stack = {"name": "prop", "cache": {"image": "redis:7.4", "base_url": "redis://127.0.0.1:7379"}}
    return {"providers.yaml": yaml.safe_dump({"providers": providers}),
            "model-mappings.yaml": yaml.safe_dump(mappings), "stack.yaml": yaml.safe_dump(stack)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_valid_specs_render_and_litellm_accepts_them(files: dict[str, str]) -> None:
    loaded = load_files(files)
    assert not loaded.errors, [p.format() for p in loaded.errors]
    desired = render(loaded.require())
    config = desired.litellm_config
    litellm.Router(model_list=config["model_list"], **router_kwargs(config))
    assert render(loaded.require()) == desired


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs(), st.randoms(use_true_random=False))
def test_provider_order_does_not_change_the_output(files: dict[str, str], rnd: object) -> None:
    data = yaml.safe_load(files["providers.yaml"])
    items = list(data["providers"].items())
    rnd.shuffle(items)  # type: ignore[attr-defined]
    shuffled = dict(files, **{"providers.yaml": yaml.safe_dump({"providers": dict(items)}, sort_keys=False)})
    a, b = render(load_files(files).require()), render(load_files(shuffled).require())
    assert a.config_text == b.config_text
    assert a.containers == b.containers


# --------------------------------------------------------------------------- mutations of real specs

EXAMPLE = {name: text for name, text in __import__("conftest").read_spec_dir(
    __import__("conftest").ROOT / "config" / "example").items()}
MUTATIONS = ["delete", "duplicate", "swap", "indent", "dedent", "truncate", "replace_char", "insert_char"]


@st.composite
def mutated_example(draw: st.DrawFn) -> dict[str, str]:
    """config/example with a few line-level edits of the kinds hands make: a line lost,
    doubled, moved, mis-indented, cut short, or a character changed."""
    files = dict(EXAMPLE)
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from(sorted(files)))
        lines = files[name].split("\n")
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(MUTATIONS))
        line = lines[i]
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, line)
        elif kind == "swap" and i + 1 < len(lines):
            lines[i], lines[i + 1] = lines[i + 1], line
        elif kind == "indent":
            lines[i] = "  " + line
        elif kind == "dedent":
            lines[i] = line[2:]
        elif kind == "truncate":
            lines[i] = line[: draw(st.integers(0, max(len(line) - 1, 0)))]
        elif kind in ("replace_char", "insert_char") and line:
            j = draw(st.integers(0, len(line) - 1))
            c = draw(st.sampled_from([":", "-", "[", "]", "{", "}", "'", '"', "#", "&", "*", "!", "|", ">", " ", "x", "0"]))
            lines[i] = line[:j] + c + line[j + (kind == "replace_char"):]
        files[name] = "\n".join(lines)
    return files


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_example())
def test_mutated_example_specs_give_located_problems_or_render(files: dict[str, str]) -> None:
    loaded = load_files(files)
    for problem in loaded.problems:
        assert problem.line >= 1 and problem.column >= 1, problem.format()
        assert problem.hint, problem.format()
    if not loaded.errors:
        render(loaded.require())
