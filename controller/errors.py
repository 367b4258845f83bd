"""The error tree of llm-gitops, and `Problem`, one finding about a spec.

Sits under everything: every layer raises these and nothing else leaves a layer
(adapters translate `docker.errors` / `git.exc` into them). Every error names its
subject (a file:line, a container, a commit) and, where we know it, what to do.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Problem:
    """One finding about a spec: where it is, what it is about, what is wrong, how to fix it.

    Fields are ordered so that sorting problems sorts them by file, then line, then column.
    """

    file: str
    line: int
    column: int
    subject: str
    message: str
    hint: str = ""
    severity: Severity = Severity.ERROR

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def format(self) -> str:
        """`providers.yaml:4:5: error: vllm-qwen.stauts: unknown key; did you mean `status`?`"""
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        text = f"{where}: {self.severity.value}: {self.subject}: {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "severity": self.severity.value,
            "subject": self.subject,
            "message": self.message,
            "hint": self.hint,
        }


class ControllerError(Exception):
    """Root of every error llm-gitops raises on purpose."""


class SpecInvalid(ControllerError):
    """A spec directory (at a commit) failed the rules; `problems` holds every finding."""

    def __init__(self, problems: list[Problem], *, where: str = "") -> None:
        self.problems = sorted(problems)
        self.where = where
        errors = [p for p in self.problems if p.is_error]
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}spec is invalid ({len(errors)} error(s))")

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_error]


class SourceError(ControllerError):
    """A git repository, revision or path could not be read. The message names which."""


class RevisionNotFound(SourceError):
    """The repository does not have that commit (any more: a force-push and a gc)."""


@dataclass(frozen=True)
class Fault:
    """One reason a pass cannot go on, about something running rather than a spec file:
    a container, a port, an image, a commit. `subject` names it; `hint` says what to do."""

    subject: str
    message: str
    hint: str = ""

    def format(self) -> str:
        return f"{self.subject}: {self.message}" + (f"\n    hint: {self.hint}" if self.hint else "")

    def as_dict(self) -> dict[str, str]:
        return {"subject": self.subject, "message": self.message, "hint": self.hint}

    @property
    def engine_lost(self) -> bool:
        """The Docker engine itself stopped answering (the docker adapter names it so): the
        host failed, not the commit."""
        return self.subject.startswith("docker engine")


class FaultError(ControllerError):
    """An error about something running; carries its Fault."""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        super().__init__(fault.format())


class EngineError(FaultError):
    """The Docker engine refused or failed an operation (the adapter's only error)."""


class EngineNotFound(EngineError):
    """The container is not there (any more): removed outside llm-gitops."""


class HealthError(FaultError):
    """A started container did not become healthy: it exited, or its health endpoint did not
    answer well in time."""


class StateError(FaultError):
    """The state directory cannot be used: locked by another controller, unreadable, unwritable."""


class GatewayMismatch(FaultError):
    """A gateway (the canary of a staged config, or the live one after the swap) does not
    serve exactly the public model names the commit renders: LiteLLM dropped or renamed some."""


class Cancelled(BaseException):
    """A pass was told to stop waiting: a newer commit arrived, or the controller is stopping
    (SIGTERM). Raised from the pass's `sleep`, so it can only interrupt a wait (a health gate,
    a canary), never a half-done engine call. A BaseException like KeyboardInterrupt: the
    `except Exception` nets that turn surprises into a rollback must let it through, and
    every `finally` (a canary container's removal) still runs."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
