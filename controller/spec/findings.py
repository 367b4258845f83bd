"""Where the rules put what they find: `Findings`, and the small helpers every rule uses.

Part of the rules step of the pipeline (Spec -> problems). A finding is located through
the positioned raw YAML, so every rule can name `file:line:column`. Pure.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.errors import Problem, Severity
from controller.spec import models, yamlpos
from controller.spec.load import subject_of


@dataclass
class Findings:
    """The problems found so far, and the raw YAML data that locates them."""

    raw: Mapping[str, Any]
    problems: list[Problem] = field(default_factory=list)

    def add(self, file: str, loc: tuple[Any, ...], message: str, hint: str = "",
            *, warning: bool = False, subject: str | None = None) -> None:
        line, col = yamlpos.position(self.raw.get(file), loc)
        self.problems.append(Problem(
            file, line, col, subject or subject_of(file, loc), message, hint,
            Severity.WARNING if warning else Severity.ERROR))


def ploc(name: str, *rest: Any) -> tuple[Any, ...]:
    """The location of a provider's key in providers.yaml."""
    return ("providers", name, *rest)


def flag(args: list[str], *names: str) -> Iterator[tuple[int, str]]:
    """(index, value) of each `--flag value` or `--flag=value` in args."""
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                yield i + 1, args[i + 1]
            elif arg.startswith(name + "="):
                yield i, arg.split("=", 1)[1]


def containers(spec: models.Spec) -> Iterator[tuple[str, models.Provider, models.Container]]:
    for name, provider in spec.providers.providers.items():
        if provider.container is not None:
            yield name, provider, provider.container


def walk(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, (*path, i))
    else:
        yield path, value
