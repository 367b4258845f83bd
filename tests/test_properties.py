"""Property tests (hypothesis) on valid specs: they always render (and LiteLLM accepts
them), rendering is deterministic and does not depend on the order of providers in the
file. What the loader does with invalid input is fuzzed in test_fuzz_spec.py."""

from __future__ import annotations

import litellm
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_render import router_kwargs

from controller.render import render
from controller.spec import load_files

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
