"""The Docker engine, behind `controller.ports.Runtime`: the only module that imports `docker`.

Edge of the pipeline, both ends: it observes the stack's containers into plain data
(`Observation`) and carries out what `apply` decides (create, start, stop, rename, remove).
Every container it creates uses the host network (the spec's ports are host ports), restart
policy `unless-stopped` once healthy, our labels, and secret values from the controller's environment.
`docker.errors` and connection errors never leave this module: they become `EngineError`
naming the container and what to do.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import docker.types
import requests.exceptions

from controller import observed as obs
from controller.errors import EngineError, EngineNotFound, Fault
from controller.ports import ContainerState
from controller.render.containers import ContainerSpec

STOP_TIMEOUT_S = 30  # vLLM frees GPU memory on SIGTERM; give it time before SIGKILL
# On a host without NVIDIA's container toolkit (CI, the demo) GPU ids are still scheduled
# exclusively by the plan, but no device request is sent: set this to 1 there.
NO_GPU_REQUESTS_ENV = "LLM_GITOPS_NO_GPU_REQUESTS"

T = TypeVar("T")


def _engine(subject: Callable[..., str]) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Translate what docker-py raises into EngineError about `subject(*args)`."""

    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def inner(self: DockerRuntime, *args: Any, **kwargs: Any) -> T:
            try:
                return fn(self, *args, **kwargs)
            except docker.errors.NotFound as exc:
                raise EngineNotFound(Fault(subject(self, *args), f"not found: {_explain(exc)}",
                                        "it was removed outside llm-gitops while the pass ran; run the pass "
                                        "again (`llm-gitops retry` if the commit was quarantined)")) from None
            except docker.errors.APIError as exc:
                if _runtime_gone(exc):  # the engine itself is going away: not about this container
                    raise EngineError(_unreachable(self.where, exc)) from None
                raise EngineError(Fault(subject(self, *args), f"the engine refused: {_explain(exc)}",
                                        _hint_for(_explain(exc)))) from None
            except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
                raise EngineError(_unreachable(self.where, exc)) from None
        return inner
    return wrap


def _explain(exc: docker.errors.APIError) -> str:
    return str(exc.explanation or exc).strip()


def _runtime_gone(exc: docker.errors.APIError) -> bool:
    """The daemon lost its container runtime mid-call: containerd's gRPC connection is closing
    or refused (the daemon is being restarted, or crashed). dockerd answers that with a 5xx
    about the container the call named, but it says nothing about the container or the commit:
    a pass that meets it must go back without blaming (quarantining) the commit, as when the
    engine does not answer at all."""
    text = _explain(exc).lower()
    return (exc.status_code or 0) >= 500 and (
        "transport is closing" in text or "error while dialing" in text or "code = unavailable" in text
        or text.endswith(": unavailable"))


def _hint_for(message: str) -> str:
    if "could not select device driver" in message:
        return ("this engine cannot give containers GPUs: install the NVIDIA Container Toolkit, or on a host "
                f"without GPUs set {NO_GPU_REQUESTS_ENV}=1")
    if "No such image" in message or "pull access denied" in message:
        return "build or load the image on this host (docker images); llm-gitops never pulls"
    if "is already in use" in message:
        return "another container has this name; llm-gitops does not remove containers it does not own"
    return "see the engine's log (journalctl -u docker, or the dockerd log)"


def _unreachable(where: str, exc: BaseException) -> Fault:
    return Fault(f"docker engine {where}", f"does not answer ({type(exc).__name__}: {exc})".replace("\n", " "),
                 "start it (make engine, or systemctl start docker) or set DOCKER_HOST; the next pass plans from "
                 "whatever runs then")


class DockerRuntime:
    """`Runtime` on a Docker engine. `environ` supplies secret values (the controller's own
    environment by default); `gateway_dir` is the host directory the gateway mounts."""

    def __init__(self, *, gateway_dir: Path, environ: Mapping[str, str] | None = None,
                 client: docker.DockerClient | None = None, owner: str = "", state_dir: str = "") -> None:
        self.owner, self.state_dir = owner, state_dir
        self.environ = dict(os.environ if environ is None else environ)
        self.gateway_dir = gateway_dir
        self.where = self.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        self.gpu_requests = self.environ.get(NO_GPU_REQUESTS_ENV, "") not in ("1", "true", "yes")
        self._names: dict[str, str] = {}   # id -> name, so that errors name the container
        self._secrets: set[str] = set()    # names of secrets given to containers: redacted from their logs
        try:
            self.client = client or docker.DockerClient.from_env(environment=self.environ, timeout=120)
            self.api = self.client.api
        except docker.errors.DockerException as exc:
            raise EngineError(_unreachable(self.where, exc)) from None

    def _mine(self, labels: Mapping[str, str], stack: str) -> bool:
        """Made by this state dir, in any stack: the state dir's path is what the gateway
        mounts, so a copied or moved state dir is another one. Without the label on the
        container or a state dir here (status), simply: of this stack."""
        made_in = labels.get(obs.STATE_DIR)
        if not made_in or not self.state_dir:
            return labels.get(obs.STACK) == stack
        return made_in == self.state_dir

    def subject(self, container_id: str) -> str:
        name = self._names.get(container_id)
        return f"container {name} ({container_id[:12]})" if name else f"container {container_id[:12]}"

    # ------------------------------------------------------------------ observe

    @_engine(lambda self, stack, names=(): f"docker engine {self.where}")
    def observe(self, stack: str, names: Iterable[str] = ()) -> obs.Observation:
        """One list call: the stack's managed containers, and any container without our
        labels (or of another stack) that has one of `names`."""
        wanted = set(names)
        ours: list[obs.ObservedContainer] = []
        foreign: dict[str, str] = {}
        foreign_ports: dict[int, str] = {}
        for summary in self.api.containers(all=True):
            labels = summary.get("Labels") or {}
            name = (summary.get("Names") or ["/"])[0].lstrip("/")
            if labels.get(obs.MANAGED_BY) != obs.MANAGED_BY_US:
                if name in wanted:
                    foreign[name] = f"{summary['Id'][:12]}, without llm-gitops labels"
                continue
            seen = parse(summary["Id"], name, summary.get("State", ""), labels)
            if self._mine(labels, stack):
                # this stack's, or another stack's that this state dir made (a renamed stack,
                # leftovers of interrupted passes): the plan removes what is not wanted
                ours.append(seen)
                self._names[summary["Id"]] = name
                self._secrets |= set((seen.spec or {}).get("secret_env") or ())
                continue
            if labels.get(obs.STACK) != stack:
                if name in wanted:
                    foreign[name] = f"{summary['Id'][:12]}, of llm-gitops stack {labels.get(obs.STACK)}"
                continue
            # this stack, but another state dir's controller made it: two controllers on one
            # stack would undo each other's work, so it is a conflict, never ours to touch
            held_by = f"{summary['Id'][:12]}, managed from another state dir: {labels.get(obs.STATE_DIR) or '?'}"
            if name in wanted:
                foreign[name] = held_by
            if seen.running and seen.port is not None:
                foreign_ports[seen.port] = f"{name} ({held_by})"
        return obs.Observation(containers=tuple(sorted(ours, key=lambda c: c.name)), foreign=foreign,
                               foreign_ports=foreign_ports)

    @_engine(lambda self, images: "docker images")
    def missing_images(self, images: Iterable[str]) -> list[str]:
        missing = []
        for image in sorted(set(images)):
            try:
                self.api.inspect_image(image)
            except docker.errors.ImageNotFound:
                missing.append(image)
        return missing

    # ------------------------------------------------------------------ act

    @_engine(lambda self, spec, **_: f"container {spec.name}")
    def create(self, spec: ContainerSpec, *, stack: str, revision: str, pass_id: str) -> str:
        missing = [name for name in spec.secret_env if not self.environ.get(name)]
        if missing:  # reconcile checks first; this keeps the adapter honest on its own
            raise EngineError(Fault(f"container {spec.name}", f"secret(s) {', '.join(missing)} not set in the "
                                    "controller's environment", "export them where llm-gitops runs"))
        env = {**spec.env, **{name: self.environ[name] for name in spec.secret_env}}
        self._secrets |= set(spec.secret_env)
        host_config = self.api.create_host_config(
            network_mode="host",
            # "no" until it passes its health gate (`keep_running`): a crash on start then shows
            # its real exit status, and a failed container does not crash-loop while we go back.
            restart_policy={"Name": "no"},
            mounts=[self._mount(m) for m in spec.mounts],
            device_requests=self._gpus(spec.gpus),
            ipc_mode=spec.ipc,
            shm_size=spec.shm_size,
            privileged=spec.privileged,
        )
        created = self.api.create_container(
            image=spec.image, command=list(spec.command) or None, name=spec.name, detach=True,
            environment=env, labels=labels_for(spec, stack=stack, revision=revision, pass_id=pass_id,
                                               owner=self.owner, state_dir=self.state_dir),
            host_config=host_config, stop_timeout=STOP_TIMEOUT_S,
        )
        self._names[created["Id"]] = spec.name
        return str(created["Id"])

    def _mount(self, mount: Any) -> docker.types.Mount:
        if mount.kind == "gateway-config":
            return docker.types.Mount(mount.target, str(self.gateway_dir), type="bind", read_only=True)
        if mount.kind == "gateway-staging":  # a canary boots the staged file, never the live one
            return docker.types.Mount(mount.target, str(self.gateway_dir / ".staging"), type="bind", read_only=True)
        return docker.types.Mount(mount.target, mount.source, type=mount.kind, read_only=mount.read_only)

    def _gpus(self, gpus: str | tuple[str, ...] | None) -> list[docker.types.DeviceRequest] | None:
        if gpus is None or not self.gpu_requests:
            return None
        if gpus == "all":
            return [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        return [docker.types.DeviceRequest(device_ids=list(gpus), capabilities=[["gpu"]])]

    @_engine(lambda self, cid: self.subject(cid))
    def keep_running(self, container_id: str) -> None:
        """Restart policy unless-stopped: the engine brings it back after a crash or a reboot."""
        self.api.update_container(container_id, restart_policy={"Name": "unless-stopped"})

    @_engine(lambda self, cid: self.subject(cid))
    def halt(self, container_id: str) -> None:
        """The flap limit: restart policy "no" first (else the engine brings it straight
        back), then stop it; it stays, stopped, for `docker logs`."""
        self.api.update_container(container_id, restart_policy={"Name": "no"})
        self.api.stop(container_id, timeout=5)

    @_engine(lambda self, cid: self.subject(cid))
    def start(self, container_id: str) -> None:
        self.api.start(container_id)

    @_engine(lambda self, cid, **_: self.subject(cid))
    def stop(self, container_id: str, *, timeout_s: int | None = None) -> None:
        self.api.stop(container_id, timeout=STOP_TIMEOUT_S if timeout_s is None else timeout_s)

    @_engine(lambda self, cid, name: self.subject(cid))
    def rename(self, container_id: str, name: str) -> None:
        self.api.rename(container_id, name)
        self._names[container_id] = name

    @_engine(lambda self, cid: self.subject(cid))
    def remove(self, container_id: str) -> None:
        try:
            self.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass  # already gone: what we wanted

    @_engine(lambda self, cid: self.subject(cid))
    def state(self, container_id: str) -> ContainerState:
        try:
            info = self.api.inspect_container(container_id)
        except docker.errors.NotFound:
            return ContainerState(id=container_id, name="", status="missing", running=False)
        st = info.get("State") or {}
        return ContainerState(
            id=info["Id"], name=info.get("Name", "").lstrip("/"), status=st.get("Status", ""),
            running=bool(st.get("Running")) and not st.get("Restarting"), exit_code=st.get("ExitCode"),
            restart_count=int(info.get("RestartCount") or 0), started_at=st.get("StartedAt", ""),
            finished_at=st.get("FinishedAt", ""), error=st.get("Error", ""))

    @_engine(lambda self, cid, tail=20: self.subject(cid))
    def logs(self, container_id: str, tail: int = 20) -> str:
        raw = self.api.logs(container_id, stdout=True, stderr=True, tail=tail)
        return self.redact(raw.decode("utf-8", "replace").rstrip())

    def redact(self, text: str) -> str:
        """Servers print their settings at start (vLLM's non-default args): a log tail that
        goes into an error message and the history must not carry a secret's value, whole
        or (a multi-line key cut by the tail) line by line."""
        for name in self._secrets:
            value = self.environ.get(name, "")
            pieces = [value, *(line.strip() for line in value.splitlines())]
            for piece in sorted({p for p in pieces if len(p) >= 4}, key=len, reverse=True):
                text = text.replace(piece, f"<{name}>")
        return text


def labels_for(spec: ContainerSpec, *, stack: str, revision: str, pass_id: str, owner: str = "",
               state_dir: str = "") -> dict[str, str]:
    """Our labels. The spec is stored whole (secret names only, never values) so that a live
    plan can say which field changed; the spec hash is what decides."""
    labels = {
        obs.MANAGED_BY: obs.MANAGED_BY_US, obs.STACK: stack,
        obs.COMPONENT: spec.component, obs.SPEC_HASH: spec.spec_hash, obs.REVISION: revision,
        obs.NAME: spec.name, obs.PASS: pass_id,
        obs.SPEC: json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":")),
    }
    if spec.provider:
        labels[obs.PROVIDER] = spec.provider
    if owner:
        labels[obs.OWNER], labels[obs.STATE_DIR] = owner, state_dir
    return labels


def parse(container_id: str, name: str, state: str, labels: Mapping[str, str]) -> obs.ObservedContainer:
    """Our labels -> ObservedContainer. A spec label that does not parse, or whose fields
    have the wrong types (edited by hand), leaves `spec` unknown: the spec hash alone still
    decides, and nothing is known about its GPUs or port."""
    spec = _spec_label(labels.get(obs.SPEC, ""))
    gpus = spec.get("gpus") if spec else None
    component = labels.get(obs.COMPONENT, "provider")
    return obs.ObservedContainer(
        name=name, key=labels.get(obs.PROVIDER) or component, component=component,
        # a container the engine keeps restarting is crash-looping, not running
        spec_hash=labels.get(obs.SPEC_HASH, ""), running=state == "running",
        gpus=tuple(gpus) if isinstance(gpus, list) else gpus, port=spec.get("port") if spec else None,
        spec=spec, id=container_id, revision=labels.get(obs.REVISION), original_name=labels.get(obs.NAME),
        state=state, labels=dict(labels))


def _spec_label(text: str) -> dict[str, Any] | None:
    try:
        spec = json.loads(text)
    except ValueError:
        return None
    if not isinstance(spec, dict):
        return None
    gpus, port, health = spec.get("gpus"), spec.get("port"), spec.get("health")
    ok = ((gpus is None or gpus == "all" or isinstance(gpus, list) and all(isinstance(g, str) for g in gpus))
          and (port is None or isinstance(port, int) and not isinstance(port, bool))
          and (health is None or isinstance(health, dict) and health.get("kind") in ("http", "redis")
               and isinstance(health.get("url"), str) and set(health) <= {"kind", "url"})
          and isinstance(spec.get("secret_env", []), list))
    return spec if ok else None
