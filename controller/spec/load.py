"""Files -> Spec: parse the three YAML files, validate their shapes, run every rule.

First stage of the pipeline. `load_files` takes file *contents* (read from a directory
or from a git commit by an adapter) and returns the Spec together with every problem
found, each located at `file:line:column`. Pure: no file, git or Docker access.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from controller.errors import Problem, Severity, SpecInvalid
from controller.spec import models, yamlpos

PROVIDERS = "providers.yaml"
MAPPINGS = "model-mappings.yaml"
STACK = "stack.yaml"
FILES: dict[str, type[BaseModel]] = {
    PROVIDERS: models.ProvidersFile,
    MAPPINGS: models.MappingsFile,
    STACK: models.StackFile,
}


@dataclass(frozen=True)
class Loaded:
    """A parsed spec directory: the Spec (None if a file was unusable), its raw data, its problems."""

    spec: models.Spec | None
    raw: Mapping[str, Any]
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def rules_ran(self) -> bool:
        """False when a file was unreadable or mis-shaped, so the cross-file rules could not run."""
        return self.spec is not None

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_error]

    def require(self, where: str = "") -> models.Spec:
        """The Spec, or SpecInvalid listing every problem."""
        if self.spec is None or self.errors:
            raise SpecInvalid(self.problems, where=where)
        return self.spec


def subject_of(filename: str, loc: Sequence[Any]) -> str:
    """`('providers', 'vllm-qwen', 'container', 'args', 0)` -> `vllm-qwen.container.args[0]`."""
    parts = list(loc[1:] if filename == PROVIDERS and loc and loc[0] == "providers" else loc)
    parts = [p for p in parts if p != "[key]"]  # pydantic's marker for "the key itself"
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or filename


def is_informational(filename: str, loc: Sequence[Any]) -> bool:
    """Whether the key at `loc` is informational: accepted and shown, never changes what runs.

    Positions where users choose names (provider names, env keys) are skipped by position,
    so a provider called `notes` is still a provider.
    """
    if not loc:
        return False
    infos = {
        PROVIDERS: [(0, models.informational_keys(models.ProvidersFile)),
                    (2, models.informational_keys(models.Provider)),
                    (4, models.informational_keys(models.Model) if len(loc) > 4 and loc[2] == "models" else frozenset())],
        MAPPINGS: [(0, models.informational_keys(models.MappingsFile)),
                   (2, frozenset({"description", "notes", "tags", "use_case"})),
                   (4, frozenset({"description"}) if loc[0] == "load_balancing" else frozenset())],
        STACK: [(0, models.informational_keys(models.StackFile)), (1, frozenset({"description"}))],
    }.get(filename, [])
    return any(len(loc) > i and loc[i] in keys for i, keys in infos)


# ----------------------------------------------------------------- pydantic errors -> problems


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types inside Optional/Union/Annotated."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def _keys_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """The keys a mapping at `loc` (a path inside `model`) may have; [] when it is free-form."""
    candidates: list[Any] = [model]
    for part in loc:
        following: list[Any] = []
        for cand in candidates:
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                if isinstance(part, str) and part in cand.model_fields:
                    following += _unwrap(cand.model_fields[part].annotation)
            elif typing.get_origin(cand) is dict:
                following += _unwrap(typing.get_args(cand)[1])
            elif typing.get_origin(cand) is list:
                following += _unwrap(typing.get_args(cand)[0])
        candidates = following
    keys: list[str] = []
    for cand in candidates:
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            keys += list(cand.model_fields)
    return keys


SHAPE_HINT = "see \"The spec repo\" in the README and the examples in config/, or `llm-gitops schema`"
# keys the models accept only to refuse them with a better message (rules.py)
_REFUSED_FEATURES = frozenset({"routing_rules", "patterns", "routing_strategy", "condition"})


def _message(err: Mapping[str, Any], model: type[BaseModel]) -> tuple[str, str]:
    """A (message, hint) pair for one pydantic error, in the words a spec author needs."""
    kind, loc = err["type"], err["loc"]
    if kind == "extra_forbidden":
        known = [k for k in _keys_at(model, loc[:-1]) if k not in _REFUSED_FEATURES]
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        message = f"`{loc[-1]}`: unknown key" + (f"; did you mean `{close[0]}`?" if close else "")
        odd = [c for c in str(loc[-1]) if not c.isascii()]
        if odd:  # a Cyrillic `ѕ` looks like `s`: say why a key that reads right is unknown
            message += f" (it contains the non-ASCII character U+{ord(odd[0]):04X})"
        return message, "known keys here: " + ", ".join(sorted(known))
    if kind == "missing":
        return "required key is missing", f"add `{loc[-1]}:`"
    if loc and loc[-1] == "[key]" and isinstance(err.get("input"), bool):
        return ("YAML reads this name as true/false (on, off, yes, no, y, n do that)",
                'quote it: "on":')
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "[key]":
        pattern = err.get("ctx", {}).get("pattern", "")
        return (f"name `{err.get('input')}` is not allowed",
                f"names use lowercase letters, digits, `.`, `_` and `-` (pattern {pattern})")
    if kind == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == models.ENV_NAME_RE:
        return ("must be the NAME of an environment variable, not its value",
                "letters, digits and `_`, e.g. OPENAI_API_KEY; the controller reads the value from its environment")
    if loc and loc[-1] == "api_key":
        return ("a literal API key must not be in git",
                "set `env_var: NAME` (or `api_key: os.environ/NAME`) and give the controller that variable")
    value = err.get("input")
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be a mapping of keys, not {_kind_of(value)}", _hint(kind, {})
    if kind in ("list_type", "tuple_type"):
        return f"must be a list, not {_kind_of(value)}", _hint(kind, {})
    msg = err["msg"].removeprefix("Value error, ")
    if loc and loc[-1] == "gpus":
        got = f" (got {_shown(value, loc)})" if isinstance(value, (str, int, float, bool)) else ""
        return msg + got, "write e.g. `gpus: [0]`, `gpus: [0, 1]` or `gpus: all`"
    if loc and loc[-1] == "base_url":
        return (f"{msg} (got {_shown(value, loc)})",
                "write it like http://127.0.0.1:8001 (or redis://127.0.0.1:6379 for the cache); "
                "keys go in env_var, never in the URL")
    if isinstance(value, (str, int, float, bool)):
        msg = f"{msg} (got {_shown(value, loc)})"
    return msg, _hint(kind, err.get("ctx") or {})


def _kind_of(value: Any) -> str:
    """What the user wrote, in YAML's words: by isinstance, because the loader's own types
    (PosDict, SourceInt, ...) must never reach a message."""
    if value is None:
        return "empty"
    for kind, name in ((bool, "true/false"), (int, "a number"), (float, "a number"), (str, "text"),
                       (list, "a list"), (dict, "a mapping")):
        if isinstance(value, kind):
            return name
    return "a date" if hasattr(value, "isoformat") else "a YAML value of another kind"


_SECRETISH = re.compile(r"(key|token|secret|password)", re.IGNORECASE)


def _shown(value: Any, loc: Sequence[Any]) -> str:
    """The offending value, unless it may be a secret: error output ends up in CI logs and PR comments."""
    text = str(value)
    if (any(_SECRETISH.search(str(part)) for part in loc[-2:] if part != "[key]") or "@" in text
            or re.match(r"^(sk-|sk_|ghp_|hf_|xox[bp]-|AKIA)", text) or len(text) > 80):
        return "a value not shown here, since it may be a secret"
    return repr(value)


def _hint(kind: str, ctx: Mapping[str, Any]) -> str:
    """What to do about a type or value error, by pydantic's error type."""
    if kind == "literal_error":
        return "use one of the values listed"
    if kind.startswith(("float_", "int_")):
        return "write a number"
    if kind.startswith("bool_"):
        return "write true or false"
    if kind == "string_type":
        return "write text; quote it if YAML reads it as something else (a number, a date, `key:`)"
    if kind in ("list_type", "tuple_type"):
        return "write a list: [a, b], or one `- item` per line"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "write a mapping of `key: value` lines"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return "use a value within the limit"
    if kind == "string_pattern_mismatch":
        return f"the value must match {ctx.get('pattern', 'the pattern')}"
    if kind == "too_short":
        return "give at least one item"
    return SHAPE_HINT


def _shape_problems(filename: str, data: Any, exc: ValidationError) -> list[Problem]:
    model = FILES[filename]
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        # the position of a missing key is its parent mapping's; of anything else, itself
        line, col = yamlpos.position(data, loc[:-1] if err["type"] == "missing" else loc)
        message, hint = _message(err, model)
        # an unknown key, or a bad key name, is about the mapping that holds it
        # ("vllm-qwen: `stauts`: unknown key")
        parent = loc[:-1] if err["type"] == "extra_forbidden" else loc[:-2] if loc[-1:] == ("[key]",) else loc
        subject = subject_of(filename, parent)
        problems.append(Problem(filename, line, col, subject, message, hint))
    return problems


def _parse(filename: str, text: str) -> tuple[Any, BaseModel | None, list[Problem]]:
    data, problems = yamlpos.load(text, filename, lambda loc: subject_of(filename, loc))
    if problems and data is None:
        return None, None, problems
    if data is None:
        data = yamlpos.PosDict()
    if not isinstance(data, dict):
        got = "plain text" if isinstance(data, str) else _kind_of(data)
        return data, None, problems + [Problem(
            filename, *getattr(data, "pos", (1, 1)), filename,
            f"the file must be a mapping of keys, not {got}", SHAPE_HINT)]
    try:
        return data, FILES[filename].model_validate(data), problems
    except ValidationError as exc:
        return data, None, problems + _shape_problems(filename, data, exc)
    except RecursionError:
        return data, None, problems + [Problem(
            filename, 1, 1, filename, "nesting is too deep (recursive YAML aliases?)",
            "remove self-referencing anchors")]


def load_files(files: Mapping[str, str]) -> Loaded:
    """Parse and check a spec directory given as `{filename: text}`.

    Unknown file names are ignored (a spec repo may hold anything else). `providers.yaml`
    is required. Returns every problem at once, sorted; the Spec is None when a file's
    shape is wrong, because the cross-file rules need all three files to make sense.
    """
    from controller.spec import rules  # rules import models and yamlpos too; keep load light

    if PROVIDERS not in files:
        return Loaded(None, {}, [Problem(PROVIDERS, 0, 0, PROVIDERS, "file not found",
                                         "point at the directory that holds providers.yaml "
                                         "(`plan` takes it as --path)")])
    raw: dict[str, Any] = {}
    parsed: dict[str, BaseModel] = {}
    problems: list[Problem] = []
    for filename in FILES:
        if filename not in files:
            continue
        data, model, found = _parse(filename, files[filename])
        raw[filename] = data
        problems += found
        if model is not None:
            parsed[filename] = model
    if len(parsed) != sum(1 for f in FILES if f in files) or any(p.is_error for p in problems):
        return Loaded(None, raw, sorted(problems))
    spec = models.Spec(
        providers=parsed[PROVIDERS],
        mappings=parsed.get(MAPPINGS, models.MappingsFile()),
        stack=parsed.get(STACK, models.StackFile()),
    )
    problems += rules.check(spec, raw)
    return Loaded(spec, raw, sorted(problems))


__all__ = ["FILES", "Loaded", "is_informational", "MAPPINGS", "PROVIDERS", "STACK", "Severity", "load_files", "subject_of"]
