"""A pass against the real engine: create, no-op, and the fewest restarts for each change."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest

from engine.lab import Lab, stub_provider

pytestmark = pytest.mark.docker


def test_first_pass_creates_everything_and_the_second_is_a_no_op(lab: Lab) -> None:
    lab.with_cache()
    commit = lab.commit("first")
    code, out, err = lab.apply()
    assert code == 0, out + err
    assert f"{commit[:12]}: applied" in out
    containers = lab.containers()
    assert sorted(containers) == sorted(lab.cname(k) for k in ("alpha", "beta", "cache", "gateway"))
    assert all(c["State"]["Running"] for c in containers.values())
    # cache first, gateway last (ARCHITECTURE.md order), read from the engine's start times
    started = sorted(containers, key=lambda n: containers[n]["State"]["StartedAt"])
    assert started[0] == lab.cname("cache") and started[-1] == lab.cname("gateway")
    for info in containers.values():
        assert info["HostConfig"]["NetworkMode"] == "host"
        assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        labels = info["Config"]["Labels"]
        assert labels["llm-gitops.managed-by"] == "llm-gitops" and labels["llm-gitops.revision"] == commit
    gateway = containers[lab.cname("gateway")]
    assert [(m["Destination"], m["RW"]) for m in gateway["Mounts"]] == [("/etc/llm-gitops", False)]
    assert (lab.state / "gateway" / "config.yaml").stat().st_mode & 0o777 == 0o600
    history_before = lab.history()

    code, out, _ = lab.apply()
    assert code == 0 and "nothing to do" in out
    again = lab.containers()
    assert {n: (c["Id"], c["State"]["StartedAt"], c["RestartCount"]) for n, c in again.items()} == \
           {n: (c["Id"], c["State"]["StartedAt"], c["RestartCount"]) for n, c in containers.items()}
    assert lab.history() == history_before  # a no-op writes nothing


def test_each_change_restarts_only_what_it_feeds(lab: Lab) -> None:
    lab.commit("first")
    assert lab.apply()[0] == 0
    ids = lab.ids()

    # one provider's args: that container only
    lab.providers["alpha"]["container"]["args"] = ["--seed", "7"]
    lab.commit("alpha args")
    code, out, err = lab.apply()
    assert code == 0, out + err
    now = lab.ids()
    assert now[lab.cname("alpha")] != ids[lab.cname("alpha")]
    assert {n: i for n, i in now.items() if n != lab.cname("alpha")} == \
           {n: i for n, i in ids.items() if n != lab.cname("alpha")}
    assert len(now) == 3  # the replaced container is gone, not left aside
    ids = now

    # a description: nothing restarts, and the commit is recorded as applied
    started = {n: i["State"]["StartedAt"] for n, i in lab.containers().items()}
    lab.providers["beta"]["description"] = "now with a description"
    commit = lab.commit("describe beta")
    code, out, _ = lab.apply()
    assert code == 0 and lab.ids() == ids
    assert {n: i["State"]["StartedAt"] for n, i in lab.containers().items()} == started
    assert lab.status()["last_applied"] == commit

    # a model mapping: the gateway only
    lab.mappings["exact_matches"]["fast"] = {"provider": "beta", "backend_model": "m-beta"}
    lab.commit("public name fast")
    assert lab.apply()[0] == 0
    now = lab.ids()
    assert now[lab.cname("gateway")] != ids[lab.cname("gateway")]
    assert now[lab.cname("alpha")] == ids[lab.cname("alpha")] and now[lab.cname("beta")] == ids[lab.cname("beta")]
    assert "fast" in (lab.state / "gateway" / "config.yaml").read_text()
    ids = now

    # disabling a provider removes its container and nothing else restarts but the gateway
    # (the gateway's config loses that provider's models)
    lab.providers["beta"]["status"] = "disabled"
    del lab.mappings["exact_matches"]["fast"]
    lab.commit("disable beta")
    code, out, err = lab.apply()
    assert code == 0, out + err
    now = lab.ids()
    assert lab.cname("beta") not in now
    assert now[lab.cname("alpha")] == ids[lab.cname("alpha")]
    assert lab.status()["drift"] == []


def test_a_stopped_container_with_the_same_spec_is_started_not_recreated(lab: Lab) -> None:
    lab.commit("first")
    assert lab.apply()[0] == 0
    ids = lab.ids()
    lab.engine.api.stop(ids[lab.cname("alpha")], timeout=5)
    assert lab.status()["drift"] == [f"{lab.cname('alpha')}: exited (stopped by hand?)"]
    code, out, _ = lab.apply()
    assert code == 0, out
    assert lab.ids() == ids and lab.containers()[lab.cname("alpha")]["State"]["Running"]
    assert f"applied: started {lab.cname('alpha')}\n" in out


def test_switching_the_active_vllm_on_one_gpu_stops_the_old_before_the_new_starts(lab: Lab) -> None:
    lab.providers = {
        "vllm-a": stub_provider(lab.ports["alpha"], "m-a", gpus=["0"]),
        "vllm-b": {**stub_provider(lab.ports["beta"], "m-b", gpus=["0"]), "status": "disabled"},
    }
    lab.commit("a holds GPU 0")
    assert lab.apply()[0] == 0
    old_id = lab.ids()[lab.cname("vllm-a")]
    t0 = int(time.time()) - 1
    lab.providers["vllm-a"]["status"] = "disabled"
    lab.providers["vllm-b"]["status"] = "active"
    lab.commit("b takes GPU 0")
    code, out, err = lab.apply()
    assert code == 0, out + err
    new_id = lab.ids()[lab.cname("vllm-b")]
    events = lab.engine.api.events(since=t0, until=int(time.time()) + 1, decode=True,
                                   filters={"type": "container", "label": f"llm-gitops.stack={lab.name}"})
    order = [(e["status"], e["id"]) for e in events if e.get("status") in ("start", "die", "stop")]
    assert order.index(("die", old_id)) < order.index(("start", new_id)), order
    assert lab.cname("vllm-a") not in lab.ids()


def test_gpus_become_a_device_request_or_a_clear_error(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLM_GITOPS_NO_GPU_REQUESTS")
    lab.providers["alpha"]["container"]["gpus"] = ["0"]
    lab.commit("alpha on GPU 0")
    code, out, err = lab.apply()
    if "nvidia" in (lab.engine.info().get("Runtimes") or {}):  # a GPU host: it gets the device
        assert code == 0, out + err
        requests = lab.containers()[lab.cname("alpha")]["HostConfig"]["DeviceRequests"]
        assert requests[0]["DeviceIDs"] == ["0"] and requests[0]["Capabilities"] == [["gpu"]]
    else:  # here: the engine cannot give GPUs, and the error says what to do
        assert code == 1
        assert f"container {lab.cname('alpha')}" in out and "could not select device driver" in out
        assert "NVIDIA Container Toolkit" in out and "LLM_GITOPS_NO_GPU_REQUESTS=1" in out
        requests = lab.containers()[lab.cname("alpha")]["HostConfig"]["DeviceRequests"]
        assert requests[0]["DeviceIDs"] == ["0"] and requests[0]["Capabilities"] == [["gpu"]]


def test_volumes_ipc_and_shm_reach_the_container(lab: Lab, tmp_path: Any) -> None:
    """(`privileged` is passed the same way, but this sandboxed engine cannot start one.)"""
    models = tmp_path / "models"
    models.mkdir()
    (models / "weights.txt").write_text("not really weights")
    volume = f"{lab.name}-cache"
    lab.stack["policy"]["allowed_mount_roots"] = [str(tmp_path)]
    lab.providers["alpha"]["container"].update(
        volumes=[f"{models}:/models:ro", f"{volume}:/root/.cache"], ipc="host")
    lab.providers["beta"]["container"]["shm_size"] = "256m"  # either ipc: host or shm_size
    lab.commit("alpha with mounts")
    try:
        code, out, err = lab.apply()
        assert code == 0, out + err
        info = lab.containers()[lab.cname("alpha")]
        host = info["HostConfig"]
        assert host["IpcMode"] == "host" and host["Privileged"] is False
        assert lab.containers()[lab.cname("beta")]["HostConfig"]["ShmSize"] == 256 * 1024 * 1024
        mounts = {m["Destination"]: (m["Type"], m.get("Name") or m["Source"], m["RW"]) for m in info["Mounts"]}
        assert mounts == {"/models": ("bind", str(models), False), "/root/.cache": ("volume", volume, True)}
        exec_id = lab.engine.api.exec_create(info["Id"], ["cat", "/models/weights.txt"])
        assert lab.engine.api.exec_start(exec_id).decode() == "not really weights"
    finally:
        lab.cleanup()
        with contextlib.suppress(Exception):
            lab.engine.api.remove_volume(volume, force=True)
