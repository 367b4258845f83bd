"""The controller's settings: one file (`llm-gitops.yaml`), the environment, and flags.

Pure: `resolve` takes the file's text, the environment and the parsed flags and returns
`Settings`, or raises `SettingsError` naming where each bad value came from
(`llm-gitops.yaml:7`, `environment LLM_GITOPS_POLL_INTERVAL_S`, `--poll-interval-s`).
Flags override the environment, which overrides the file, which overrides the defaults.
`cli.py` reads the file and turns every field here into a `run` flag, so `run --help`
documents them all from this one list.

Secrets never live here: the webhook secret is read from the environment variable that
`webhook_secret_env` names, and container secrets from the controller's environment.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from controller.errors import ControllerError
from controller.spec import yamlpos

ENV_PREFIX = "LLM_GITOPS_"
DEFAULT_FILE = "llm-gitops.yaml"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    repo: str | None = Field(None, description="the spec repository: a local path, or a URL (https://, ssh://, "
                             "git@host:path, file://) that the controller mirrors into the state dir")
    state_dir: str | None = Field(None, description="the controller's state directory (one per stack; locked "
                                  "while it runs)")
    branch: str = Field("main", description="the branch whose head is served")
    path: str = Field("", description="the spec directory inside the repository (default: its top)")
    host_name: str | None = Field(None, description="this host's name, for specs that place containers on "
                                  "several hosts")
    watch: bool = Field(True, description="local repository: watch its refs, so a commit starts a pass within "
                        "a second (it is also checked every poll interval)")
    poll_interval_s: float = Field(30.0, gt=0, description="how often the branch head is checked (a URL: "
                                   "`git ls-remote`, fetching only when it moved)")
    drift_interval_s: float = Field(60.0, gt=0, description="how often what runs is compared with the served "
                                    "commit, and put back where it differs")
    backoff_initial_s: float = Field(5.0, gt=0, description="after a failed pass, wait this long before the "
                                     "next try; doubled after each further failure")
    backoff_max_s: float = Field(300.0, gt=0, description="the longest wait between tries after failures")
    flap_limit: int = Field(5, ge=1, description="a container restarted more than this many times within "
                            "flap_window_s is stopped and left alone (reported), until a new commit or `retry`")
    flap_window_s: float = Field(600.0, gt=0, description="the window of flap_limit, in seconds")
    http_port: int | Literal["off"] = Field(8790, description="port of the HTTP endpoint on 127.0.0.1 "
                                            "(/healthz, /status, /metrics, POST /hooks/git); 0 picks a free one; "
                                            "`off` disables it")
    webhook_secret_env: str = Field("LLM_GITOPS_WEBHOOK_SECRET", description="the environment variable that "
                                    "holds the webhook's HMAC secret; POST /hooks/git is refused while it is unset")
    require_signed: bool = Field(False, description="apply only head commits that `git verify-commit` accepts "
                                 "(with allowed_signers or gpg_home)")
    allowed_signers: str | None = Field(None, description="SSH allowed-signers file for require_signed "
                                        "(git's gpg.ssh.allowedSignersFile)")
    gpg_home: str | None = Field(None, description="GnuPG home holding the trusted keys for require_signed")
    canary: bool = Field(True, description="boot each new gateway config in a scratch gateway on a free port "
                         "and check its models before the swap")
    log_format: Literal["auto", "json", "console"] = Field("auto", description="log lines: `console` (readable), "
                                                            "`json`, or `auto`: console on a terminal, else JSON")

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(f"backoff_max_s ({self.backoff_max_s}) is below backoff_initial_s "
                             f"({self.backoff_initial_s})")
        if self.require_signed and not (self.allowed_signers or self.gpg_home):
            raise ValueError("require_signed needs allowed_signers (SSH signatures) or gpg_home (GPG): "
                             "without either, no commit could be accepted")
        if isinstance(self.http_port, int) and not 0 <= self.http_port <= 65535:
            raise ValueError(f"http_port {self.http_port} is not a port (0-65535, or `off`)")
        return self


FIELDS: tuple[str, ...] = tuple(Settings.model_fields)


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


class SettingsError(ControllerError):
    """Settings that cannot be used; the message names each bad value's origin."""


@dataclass(frozen=True)
class Resolved:
    settings: Settings
    origins: dict[str, str]      # field -> "default" | "file:line" | "environment VAR" | "--flag"


def resolve(file_text: str | None, file_name: str, environ: Mapping[str, str],
            flags: Mapping[str, Any]) -> Resolved:
    """Merge defaults < file < environment < flags (a flag given as None is not given)."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {f: "default" for f in FIELDS}
    errors: list[str] = []
    if file_text is not None:
        for field, value, line in _file_values(file_text, file_name, errors):
            values[field], origins[field] = value, f"{file_name}:{line}"
    for field in FIELDS:
        if env_name(field) in environ:
            values[field], origins[field] = _env_value(field, environ[env_name(field)]), f"environment {env_name(field)}"
    for field, value in flags.items():
        if field in origins and value is not None:
            values[field], origins[field] = value, flag_name(field)
    if errors:
        raise SettingsError("\n".join(errors))
    try:
        return Resolved(Settings.model_validate(values), origins)
    except ValidationError as exc:
        raise SettingsError("\n".join(_explain(e, origins) for e in exc.errors())) from None


def _file_values(text: str, file_name: str, errors: list[str]) -> list[tuple[str, Any, int]]:
    data, problems = yamlpos.load(text, file_name)
    bad = [p for p in problems if p.is_error]
    if bad or (data is None and text.strip() and not text.lstrip().startswith("#")):
        errors += [f"{file_name}:{p.line}: {p.message}; {p.hint}" for p in bad] or [f"{file_name}: not valid YAML"]
        return []
    if data is None:
        return []
    if not isinstance(data, dict):
        errors.append(f"{file_name}:1: must be a mapping of setting: value (see `llm-gitops run --help`)")
        return []
    out = []
    for key, value in data.items():
        line = getattr(data, "key_pos", {}).get(key, (1, 1))[0]
        if key not in FIELDS:
            near = difflib.get_close_matches(str(key), FIELDS, n=1)
            errors.append(f"{file_name}:{line}: unknown setting `{key}`"
                          + (f"; did you mean `{near[0]}`?" if near else f"; known: {', '.join(FIELDS)}"))
            continue
        out.append((str(key), yamlpos.plain_scalar(value), line))
    return out


def _env_value(field: str, raw: str) -> Any:
    """An environment string; `off`/`none` keep their meaning, an empty value means unset."""
    if raw.strip() == "":
        return None if Settings.model_fields[field].default is None else Settings.model_fields[field].default
    if field == "http_port" and raw.strip().lower() in ("off", "none", "false"):
        return "off"
    return raw.strip()


def _explain(error: Any, origins: Mapping[str, str]) -> str:
    loc = [str(p) for p in error.get("loc", ()) if not str(p).startswith(("int", "literal"))]
    field = loc[0] if loc else ""
    where = origins.get(field, "settings") if field else "settings"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    got = error.get("input")
    shown = f" (got {got!r})" if field and not isinstance(got, dict) else ""
    return f"{where}: {field + ': ' if field else ''}{message}{shown}"


def example_file(settings: Settings | None = None) -> str:
    """Every setting with its default and description, as a commented YAML file."""
    settings = settings or Settings()
    lines = ["# llm-gitops.yaml: settings of `llm-gitops run` (flags > environment > this file > defaults)."]
    for field, info in Settings.model_fields.items():
        value = getattr(settings, field)
        lines.append(f"\n# {info.description}")
        lines.append(f"# (environment {env_name(field)}, flag {flag_name(field)})")
        text = yaml.safe_dump({field: value}, default_flow_style=False).strip()
        lines.append(text if value is not None else f"# {field}:")
    return "\n".join(lines) + "\n"
