"""End to end through the real LiteLLM gateway (issue 5): stub backends, a real Redis, real git
commits and the real CLI. Each test proves a promise with real requests on 127.0.0.1: a new
public name answers after its pass; a commit that LiteLLM would serve wrong is stopped by the
canary before the live gateway is touched; a provider that never gets healthy is rolled back
while the old names keep answering; rendered fallbacks fire; the Redis cache answers repeats;
the master key is required.

Every container is removed by id at teardown (the Lab finds them by the test's stack label).
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from engine.lab import LITELLM, Lab, ask, stub_provider, wait_for

pytestmark = pytest.mark.docker

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 only, never a proxy


def real_gateway(lab: Lab) -> None:
    """The Lab's stack with the real LiteLLM proxy and a Redis cache. A failing backend is
    given up at once (no retries), so that a fallback answers quickly."""
    lab.with_cache()
    lab.stack["gateway"].update(image=LITELLM, startup_timeout_s=120, env={"LITELLM_LOCAL_MODEL_COST_MAP": "True"},
                                router_settings={"num_retries": 0, "timeout": 20})


def answer(reply: dict[str, Any]) -> str:
    return str(reply["choices"][0]["message"]["content"])


def completions_served(lab: Lab, key: str) -> int:
    """How many completions the stub of provider `key` has answered (its own counter)."""
    with OPENER.open(f"http://127.0.0.1:{lab.ports[key]}/stub/requests", timeout=5) as resp:
        return int(json.loads(resp.read())["completions"])


def config_digest(lab: Lab) -> str:
    return hashlib.sha256((lab.state / "gateway" / "config.yaml").read_bytes()).hexdigest()


def applied(lab: Lab, message: str) -> str:
    commit = lab.commit(message)
    code, out, err = lab.apply()
    assert code == 0 and f"{commit[:12]}: applied" in out, out + err
    return commit


def test_a_new_provider_and_public_name_answer_after_the_pass(lab: Lab) -> None:
    real_gateway(lab)
    applied(lab, "alpha and beta behind the real gateway")
    status, reply = ask(lab, "m-alpha")
    assert status == 200 and answer(reply) == f"stub m-alpha on 127.0.0.1:{lab.ports['alpha']}", reply
    assert ask(lab, "fresh")[0] != 200  # not a public name yet

    lab.providers["gamma"] = stub_provider(lab.ports["gamma"], "m-gamma", type_="llama_cpp")
    lab.mappings["exact_matches"]["fresh"] = {"provider": "gamma", "backend_model": "m-gamma"}
    commit = applied(lab, "gamma serves m-gamma as `fresh`")
    status, reply = ask(lab, "fresh")
    assert status == 200 and answer(reply) == f"stub m-gamma on 127.0.0.1:{lab.ports['gamma']}", reply
    last = lab.history()[-1]
    canary = [a for a in last["done"] if a["action"] == "canary"]
    assert last["commit"] == commit and len(canary) == 1 and canary[0]["container"].startswith(f"{lab.name}-gateway_canary_")
    assert {"action": "removed", "container": canary[0]["container"], "id": canary[0]["id"], "why": "canary"} in last["done"]
    assert not [n for n in lab.containers() if "canary" in n]  # the canary is gone


def test_a_commit_the_canary_rejects_leaves_the_live_gateway_alone(lab: Lab) -> None:
    real_gateway(lab)
    good = applied(lab, "the good commit")
    gateway_id, digest = lab.ids()[lab.cname("gateway")], config_digest(lab)

    # Passes every spec rule, and LiteLLM's own --validate_config: but LiteLLM takes a model
    # name with `*` as a wildcard route and never lists the name itself.
    lab.providers["beta"]["models"].append({"name": "m-beta-*", "context_length": 2048})
    bad = lab.commit("beta also serves m-beta-*")
    assert lab.cli("validate", str(lab.repo.path))[0] == 0
    code, out, err = lab.apply()
    assert code == 1, out + err
    assert f"{bad[:12]}: failed: commit {bad[:12]}: the canary {lab.name}-gateway_canary_" in out
    assert "does not serve m-beta-*" in out
    assert lab.ids()[lab.cname("gateway")] == gateway_id and config_digest(lab) == digest
    assert not [n for n in lab.containers() if "canary" in n]
    st = lab.status()
    assert bad in st["quarantined"] and st["last_applied"] == good
    assert ask(lab, "m-beta")[0] == 200  # and the live gateway serves on


def test_a_provider_that_never_gets_healthy_is_rolled_back_and_old_names_answer(lab: Lab) -> None:
    real_gateway(lab)
    good = applied(lab, "the good commit")
    lab.providers["gamma"] = stub_provider(lab.ports["gamma"], "m-gamma", type_="llama_cpp",
                                           env={"STUB_UNHEALTHY": "1"}, timeout=4)
    bad = lab.commit("gamma, which never gets healthy")
    code, out, err = lab.apply()
    assert code == 1 and f"Rolled back to {good[:12]}, which serves again" in out, out + err
    assert f"container {lab.cname('gamma')}: not healthy within its startup_timeout_s" in out
    assert lab.cname("gamma") not in lab.containers()
    for model, key in (("m-alpha", "alpha"), ("m-beta", "beta")):
        status, reply = ask(lab, model)
        assert status == 200 and answer(reply) == f"stub {model} on 127.0.0.1:{lab.ports[key]}", reply
    assert bad in lab.status()["quarantined"]


# ---------------------------------------------------------------- one applied stack, several requests


@pytest.fixture(scope="module")
def served(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The real gateway in front of alpha (falls back to beta) and beta, with the cache."""
    with pytest.MonkeyPatch.context() as mp:
        the_lab = Lab(engine, tmp_path_factory.mktemp("served"), mp)
        try:
            real_gateway(the_lab)
            the_lab.mappings["fallback_chains"] = {"m-alpha": {"chain": ["m-beta"]}}
            applied(the_lab, "alpha falls back to beta")
            yield the_lab
        finally:
            the_lab.cleanup()


def test_the_gateway_refuses_a_request_without_the_master_key(served: Lab) -> None:
    before = completions_served(served, "alpha")
    assert ask(served, "m-alpha", key=None)[0] == 401
    # a wrong key is refused too; LiteLLM 1.108.7 without a database looks it up as a virtual
    # key and answers 400 "No connected db." rather than 401
    status, reply = ask(served, "m-alpha", key="sk-not-the-master-key-" + "0" * 16)
    assert status in (400, 401) and "choices" not in reply, reply
    assert completions_served(served, "alpha") == before  # refused before any backend was asked
    assert ask(served, "m-alpha")[0] == 200


def test_a_repeated_request_is_answered_from_the_redis_cache(served: Lab) -> None:
    content = f"cache me {time.time_ns()}"  # a request no earlier test made
    before = completions_served(served, "beta")
    status, first = ask(served, "m-beta", content=content)
    assert status == 200 and completions_served(served, "beta") == before + 1
    # LiteLLM writes the cache entry after answering; within a few seconds a repeat must come
    # from Redis: the same answer, and the backend's counter does not move.
    def from_cache() -> bool:
        hits = completions_served(served, "beta")
        status, again = ask(served, "m-beta", content=content)
        assert status == 200 and answer(again) == answer(first)
        return completions_served(served, "beta") == hits
    wait_for(from_cache, timeout=10, interval=0.5)
    # and it is Redis that holds it (not LiteLLM's in-memory cache): its keys, over RESP
    assert any(k.startswith("litellm") or ":" in k for k in redis_keys(served.ports["cache"])), \
        redis_keys(served.ports["cache"])


def redis_keys(port: int) -> list[str]:
    """`KEYS *` on the stack's Redis at 127.0.0.1:port, spoken in RESP by hand."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"*2\r\n$4\r\nKEYS\r\n$1\r\n*\r\n")
        data = b""
        while not data.endswith(b"\r\n") or data.count(b"\r\n") < 1 + 2 * int(data[1:data.index(b"\r\n")] or 0):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    lines = data.split(b"\r\n")
    return [lines[i].decode() for i in range(2, len(lines), 2) if lines[i]]


def test_a_rendered_fallback_answers_when_the_primary_is_stopped_by_hand(served: Lab) -> None:
    status, reply = ask(served, "m-alpha", content="primary")
    assert status == 200 and answer(reply) == f"stub m-alpha on 127.0.0.1:{served.ports['alpha']}"
    served.engine.api.stop(served.ids()[served.cname("alpha")], timeout=5)  # `docker stop`, by id
    status, reply = ask(served, "m-alpha", content=f"primary is down {time.time_ns()}")
    assert status == 200, reply
    assert answer(reply) == f"stub m-beta on 127.0.0.1:{served.ports['beta']}"  # beta, the fallback


def test_without_the_canary_the_live_check_after_the_swap_fails_the_pass_and_goes_back(lab: Lab) -> None:
    """`--no-canary`: nothing proves the config before the swap, so the check of the live
    gateway's /v1/models is what catches the bad name, and the pass goes back."""
    real_gateway(lab)
    good = applied(lab, "the good commit")
    digest = config_digest(lab)
    lab.providers["beta"]["models"].append({"name": "m-beta-*", "context_length": 2048})
    bad = lab.commit("beta also serves m-beta-*")
    code, out, err = lab.apply("--no-canary")
    assert code == 1, out + err
    assert f"{bad[:12]}: failed: commit {bad[:12]}: the gateway {lab.cname('gateway')} does not serve m-beta-*" in out
    assert f"Rolled back to {good[:12]}, which serves again" in out
    assert config_digest(lab) == digest and bad in lab.status()["quarantined"]
    last = lab.history()[-1]
    assert not [a for a in last["done"] if a["action"] == "canary"] and last["rollback"]["ok"]
    assert ask(lab, "m-beta")[0] == 200 and ask(lab, "m-alpha")[0] == 200
