"""Rules that keep secrets out of git and the host safe: SPEC.md rules 5 and 6.

Part of the rules step of the pipeline. Secrets: no literal key or token anywhere a user
could put one. Policy: host mounts under the allowed roots (never the Docker socket or
`/`), no privileged containers unless allowed, images only from `allowed_images`. Pure.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any

from controller.spec import catalog as catalog_mod
from controller.spec import models
from controller.spec.findings import Findings, containers, flag, ploc, walk
from controller.spec.litellm_rules import CONTROLLER_LITELLM_KEYS, CONTROLLER_ROUTER_KEYS
from controller.spec.load import PROVIDERS, STACK

SECRET_NAME = re.compile(r"(_KEY|_TOKEN|_SECRET)$|PASSWORD|^API_?KEY$", re.IGNORECASE)
SECRET_VALUE = re.compile(r"^(sk-|sk_|ghp_|hf_|xox[bp]-|AKIA)[A-Za-z0-9_\-]{6,}")
ENV_REF = re.compile(r"^os\.environ/[A-Za-z_][A-Za-z0-9_]*$")
ALWAYS_REFUSED_MOUNTS = ("/", "/var/run/docker.sock", "/run/docker.sock", "/var/run", "/run")
NAMED_VOLUME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# --------------------------------------------------------------------------- rule 5: secrets


def secrets(spec: models.Spec, cat: catalog_mod.Catalog, ctx: Findings) -> None:
    for name, p in spec.providers.providers.items():
        if p.api_key is not None and not ENV_REF.match(p.api_key):
            ctx.add(PROVIDERS, ploc(name, "api_key"), "a literal API key must not be in git",
                    "set `env_var: NAME` and give the controller that variable")
        for i, model in enumerate(p.models):
            _literal_secrets(PROVIDERS, ploc(name, "models", i, "options"), model.options or {}, ctx,
                             "remove it: Ollama options hold no credentials")
        if p.container is None:
            continue
        _env_secrets(PROVIDERS, ploc(name, "container", "env"), p.container.env, ctx)
        for i, value in flag(p.container.args, "--api-key", "--api_key", "--hf-token", "--token"):
            ctx.add(PROVIDERS, ploc(name, "container", "args", i), "a literal secret in args must not be in git",
                    "pass it with secret_env (the server reads e.g. VLLM_API_KEY / LLAMA_API_KEY / HF_TOKEN)")
    gw = spec.stack.gateway
    _env_secrets(STACK, ("gateway", "env"), gw.env, ctx)
    owned = {"router_settings": CONTROLLER_ROUTER_KEYS, "litellm_settings": CONTROLLER_LITELLM_KEYS}
    for section in ("router_settings", "litellm_settings"):
        # keys the controller owns are refused anyway, with their own message
        mine = {k: v for k, v in getattr(gw, section).items() if k not in owned[section]}
        _literal_secrets(STACK, ("gateway", section), mine, ctx,
                         "use `os.environ/NAME` and list NAME in gateway.secret_env")


def _literal_secrets(file: str, loc: tuple[Any, ...], values: Mapping[str, Any], ctx: Findings, hint: str) -> None:
    for path, value in walk(values, loc):
        key = str(path[-1])
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value) and \
                not ENV_REF.match(str(value)) and (
                SECRET_NAME.search(key) and not key.endswith("_env") or SECRET_VALUE.match(str(value))):
            ctx.add(file, path, "a literal secret must not be in git", hint)


def _env_secrets(file: str, loc: tuple[Any, ...], env: Mapping[str, str], ctx: Findings) -> None:
    for key, value in env.items():
        if not value:
            continue
        what = (f"`{key}` looks like a secret; its value" if SECRET_NAME.search(key)
                else f"the value of `{key}` looks like a secret; it" if SECRET_VALUE.match(value) else "")
        if what:
            ctx.add(file, (*loc, key), f"{what} must not be in git",
                    f"remove it from env and list `{key}` in secret_env: the controller passes "
                    "it through from its own environment")


# --------------------------------------------------------------------------- rule 6: policy


def policy(spec: models.Spec, cat: catalog_mod.Catalog, ctx: Findings) -> None:
    policy = spec.stack.policy
    for i, root in enumerate(policy.allowed_mount_roots):
        if posixpath.normpath(root) == "/":
            ctx.add(STACK, ("policy", "allowed_mount_roots", i), "`/` as a mount root would allow any host path",
                    "list the directories that hold models and caches, e.g. /srv, /models, /data")
    for name, p, c in containers(spec):
        if p.status == "template":
            continue
        for i, volume in enumerate(c.volumes):
            problem = _mount_problem(volume, policy.allowed_mount_roots)
            if problem:
                ctx.add(PROVIDERS, ploc(name, "container", "volumes", i), *problem)
        if c.privileged and not policy.allow_privileged:
            ctx.add(PROVIDERS, ploc(name, "container", "privileged"),
                    "privileged containers are refused by policy",
                    "remove `privileged: true`; GPUs are given with `gpus:`, not privileges "
                    "(or set policy.allow_privileged: true in stack.yaml)")
        _image_rule(PROVIDERS, ploc(name, "container", "image"), c.image, policy, ctx)
    _image_rule(STACK, ("gateway", "image"), spec.stack.gateway.image, policy, ctx)
    if spec.stack.cache is not None:
        _image_rule(STACK, ("cache", "image"), spec.stack.cache.image, policy, ctx)


def _mount_problem(volume: str, roots: list[str]) -> tuple[str, str] | None:
    parts = volume.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
        return (f"`{volume}` is not HOST:CONTAINER[:ro|rw]",
                "write e.g. /srv/hf-cache:/root/.cache/huggingface or /models:/models:ro")
    if len(parts) == 3 and parts[2] not in ("ro", "rw"):
        return f"mount mode `{parts[2]}` is not ro or rw", "use :ro or :rw"
    source = parts[0]
    if NAMED_VOLUME.match(source):
        return None  # a Docker named volume, not a host path
    if not source.startswith("/"):
        return f"host path `{source}` must be absolute", "write it from /"
    path = posixpath.normpath(source)
    if path in ALWAYS_REFUSED_MOUNTS or path.endswith("docker.sock"):
        return (f"mounting `{path}` is refused: it hands the container the host",
                "mount only the model or cache directories the server needs")
    if not any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots if r != "/"):
        return (f"host path `{path}` is outside the allowed mount roots ({', '.join(roots) or 'none'})",
                "move the data under an allowed root, or add one to policy.allowed_mount_roots in stack.yaml")
    return None


def _image_rule(file: str, loc: tuple[Any, ...], image: str, policy: models.Policy, ctx: Findings) -> None:
    if policy.allowed_images and not any(image_allowed(image, p) for p in policy.allowed_images):
        ctx.add(file, loc, f"image `{image}` is not allowed by policy",
                "allowed images: " + ", ".join(policy.allowed_images)
                + " (a prefix ending in `/` allows a namespace, any other one repository)")


def _canonical(ref: str) -> str:
    """`redis:7` -> `docker.io/library/redis:7`; `vllm/x` -> `docker.io/vllm/x`, as Docker reads them."""
    first, sep, rest = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return ref
    if not sep:
        return f"docker.io/library/{ref}" if ref else "docker.io/"
    return f"docker.io/{ref}"


def image_allowed(image: str, prefix: str) -> bool:
    """Whether `image` falls under an `allowed_images` entry, matched on name boundaries:
    `vllm/` allows `vllm/vllm-openai:v1` but `vllm` does not allow `vllmevil/x`."""
    img, pre = _canonical(image), _canonical(prefix)
    if pre.endswith(("/", ":", "@")):
        return img.startswith(pre)
    return img == pre or img.startswith((pre + ":", pre + "@"))
