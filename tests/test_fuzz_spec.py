"""Fuzzing the spec loader (issue 6, "Bad input"): whatever a spec repo holds, `load_files`
and `llm-gitops validate` answer with the project's own problems, each located
(`file:line:column` with a hint) and worded for a user, or they accept the spec and it
renders. Nothing else may escape: no exception, no traceback, no internal type name.

Inputs come from hypothesis, in five families:

- arbitrary text per file, and arbitrary YAML structures over the spec's vocabulary;
- line edits of the example specs (`config/example`, `config/demo`), the kinds hands make;
- value edits of the example specs: a value swapped for a hostile one, a key dropped,
  misspelt or doubled, a scalar wrapped in a list;
- bytes written to a spec directory (non-UTF-8, NUL, BOM, CR line ends) read through the
  CLI's `validate`, the way a user meets them.

Each test counts the distinct inputs it tried, fails if hypothesis tried far fewer than
asked, and reports the count as the `fuzz_inputs` property; the terminal summary adds them up.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, read_spec_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller import cli
from controller.plan import actual_from, plan
from controller.render import render
from controller.spec import FILES, load_files

EXAMPLES = {name: read_spec_dir(ROOT / "config" / name) for name in ("example", "demo")}

# What a message must never show: the loader's own types, library internals, object reprs.
INTERNAL = re.compile(r"Pos(Dict|List)|Source(Int|Float)|pydantic|Traceback|object at 0x|NoneType|<class ")


# --------------------------------------------------------------------------- the checks

def check_loaded(files: dict[str, str]) -> None:
    """The loader's contract: no exception; every problem located, explained and hinted,
    in the user's words; whatever passes the rules renders and plans."""
    loaded = load_files(files)  # must not raise
    for problem in loaded.problems:
        text = problem.format()
        assert problem.file in FILES, text
        assert problem.line >= 1 and problem.column >= 1, f"no location: {text}"
        assert problem.subject and problem.message and problem.hint, f"not explained: {text}"
        assert not INTERNAL.search(text), f"an internal name reaches the user: {text}"
    if not loaded.errors:
        desired = render(loaded.require())
        plan(desired, actual_from(desired))


def fingerprint(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=repr).encode()).hexdigest()


def run_counted(record_property: Callable[[str, object], None], strategy: st.SearchStrategy[Any],
                check: Callable[[Any], None], examples: int) -> None:
    """Run `check` over `examples` hypothesis inputs and count the distinct ones tried."""
    seen: set[str] = set()

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(strategy)
    def fuzz(value: Any) -> None:
        seen.add(fingerprint(value))
        check(value)

    fuzz()
    record_property("fuzz_inputs", len(seen))
    # hypothesis stops early only when it runs out of new inputs: that would mean the
    # strategy is too narrow to be worth its name
    assert len(seen) >= examples * 0.8, f"only {len(seen)} distinct inputs of {examples} asked"


# --------------------------------------------------------------------------- arbitrary input

VOCAB = ["providers", "type", "status", "base_url", "models", "name", "container", "image", "args", "env",
         "gpus", "exact_matches", "provider", "fallback_chains", "chain", "capabilities", "preferred_models",
         "load_balancing", "weight", "gateway", "cache", "policy", "router_settings", "vllm", "ollama",
         "llama_cpp", "active", "disabled", "http://127.0.0.1:8001", "secret_env", "volumes", "special_cases"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(VOCAB), st.dates())
keys = st.one_of(st.sampled_from(VOCAB), st.text(max_size=8), st.integers(-3, 3))
trees = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(keys, inner, max_size=5)), max_leaves=25)


def test_arbitrary_text_in_any_spec_file(record_property: Any) -> None:
    text_in_a_file = st.tuples(st.sampled_from(sorted(FILES)), st.text(max_size=300)).map(
        lambda ft: {"providers.yaml": "providers: {}\n", ft[0]: ft[1]})
    run_counted(record_property, text_in_a_file, check_loaded, 400)


def test_arbitrary_yaml_structures(record_property: Any) -> None:
    structures = st.dictionaries(st.sampled_from(sorted(FILES)), trees, min_size=1).map(
        lambda data: {"providers.yaml": "providers: {}\n",
                      **{name: yaml.safe_dump(value, allow_unicode=True) for name, value in data.items()}})
    run_counted(record_property, structures, check_loaded, 400)


# --------------------------------------------------------------------------- line edits

LINE_EDITS = ["delete", "duplicate", "swap", "indent", "dedent", "tab", "truncate", "replace_char", "insert_char"]
YAML_CHARS = [":", "-", "[", "]", "{", "}", "'", '"', "#", "&", "*", "!", "|", ">", "%", "@", "`", ",", "?",
              " ", "\t", "x", "0", "\x00", "\x85", "\ufeff", "é"]


@st.composite
def line_edited(draw: st.DrawFn) -> dict[str, str]:
    """An example spec with a few edits of the kinds hands make: a line lost, doubled, moved,
    mis-indented (spaces or a tab), cut short, or a character changed or added."""
    files = dict(EXAMPLES[draw(st.sampled_from(sorted(EXAMPLES)))])
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from(sorted(files)))
        lines = files[name].split("\n")
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(LINE_EDITS))
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
        elif kind == "tab":
            lines[i] = "\t" + line.lstrip(" ")
        elif kind == "truncate":
            lines[i] = line[: draw(st.integers(0, max(len(line) - 1, 0)))]
        elif kind in ("replace_char", "insert_char") and line:
            j = draw(st.integers(0, len(line) - 1))
            lines[i] = line[:j] + draw(st.sampled_from(YAML_CHARS)) + line[j + (kind == "replace_char"):]
        files[name] = "\n".join(lines)
    return files


def test_line_edits_of_the_example_specs(record_property: Any) -> None:
    run_counted(record_property, line_edited(), check_loaded, 600)


# --------------------------------------------------------------------------- value edits

HOSTILE = [None, "", " ", True, False, 0, -1, 65536, 10**30, 1.5, float("inf"), float("nan"), [], {}, [[]],
           {"x": 1}, "x" * 5000, "a\nb", "${HOME}", "os.environ/", "os.environ/NOPE", "../../etc/passwd",
           "/var/run/docker.sock", "http://", "http://127.0.0.1:0", "redis://127.0.0.1:6379", "sk-abcdef0123456789",
           "*", "m-*", "ünï©ødé", "0755", "1e400", "yes", "~", "null", "-", "--", "=", "127.0.0.1"]
VALUE_EDITS = ["replace", "delete_key", "misspell_key", "double_key", "wrap_in_list", "unknown_key"]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path] if path else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


@st.composite
def value_edited(draw: st.DrawFn) -> dict[str, str]:
    """An example spec, parsed, with one to three values or keys changed, written back as YAML:
    types the models do not expect, keys the rules must catch, references that dangle."""
    spec = draw(st.sampled_from(sorted(EXAMPLES)))
    data = {name: yaml.safe_load(text) for name, text in EXAMPLES[spec].items()}
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(data)))
        paths = _paths(data[name])
        if not paths:
            continue
        path = draw(st.sampled_from(paths))
        parent: Any = data[name]
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        kind = draw(st.sampled_from(VALUE_EDITS))
        if kind == "replace":
            parent[last] = draw(st.sampled_from(HOSTILE))
        elif kind == "wrap_in_list":
            parent[last] = [parent[last]]
        elif isinstance(parent, dict) and isinstance(last, str):
            if kind == "delete_key":
                del parent[last]
            elif kind == "misspell_key" and len(last) > 1:
                j = draw(st.integers(0, len(last) - 1))
                parent[last[:j] + last[j + 1:]] = parent.pop(last)
            elif kind == "double_key":
                parent[last + "2"] = parent[last]
            elif kind == "unknown_key":
                parent["x-" + last] = 1
    texts = {name: yaml.safe_dump(value, allow_unicode=True, sort_keys=False) for name, value in data.items()}
    if draw(st.booleans()):  # a doubled key, the YAML way: the second one wins silently in PyYAML
        name = draw(st.sampled_from(sorted(texts)))
        first = texts[name].split("\n", 1)[0]
        texts[name] = texts[name] + first + "\n"
    return texts


def test_value_edits_of_the_example_specs(record_property: Any) -> None:
    run_counted(record_property, value_edited(), check_loaded, 600)


# --------------------------------------------------------------------------- bytes, through the CLI

BYTES = [b"\xff", b"\xc3\x28", b"\x00", b"\xef\xbb\xbf", b"\r", b"\r\n", b"\t", b"\x1b[31m", b"\xe2\x80\xa8"]


@st.composite
def byte_edited(draw: st.DrawFn) -> dict[str, bytes]:
    spec = draw(st.sampled_from(sorted(EXAMPLES)))
    files = {name: text.encode() for name, text in EXAMPLES[spec].items()}
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(files)))
        data = files[name]
        at = draw(st.integers(0, len(data)))
        if draw(st.booleans()):
            files[name] = data[:at] + draw(st.sampled_from(BYTES)) + data[at:]
        else:
            files[name] = data.replace(b"\n", b"\r\n") if draw(st.booleans()) else data[:at]
    return files


LOCATED = re.compile(r"(providers|model-mappings|stack)\.yaml:\d+")


def check_validate_cli(files: dict[str, bytes]) -> None:
    """`llm-gitops validate DIR` on the bytes: exit 0, or exit 1 naming file:line; never an
    unexpected error, never a traceback."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["validate", tmp])
    text = out.getvalue() + err.getvalue()
    assert code in (0, 1), text
    assert "unexpected error" not in text and not INTERNAL.search(text), text
    if code == 1:
        assert LOCATED.search(text), f"an error without file:line:\n{text}"


def test_bytes_in_a_spec_directory_through_validate(record_property: Any) -> None:
    run_counted(record_property, byte_edited(), check_validate_cli, 300)


# --------------------------------------------------------------------------- hostile YAML, by name

def _alias_bomb(where: str) -> str:
    levels = "".join(f"    {n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefg", "bcdefgh"))
    return ("providers:\n  p:\n    type: vllm\n    base_url: http://127.0.0.1:8000\n    models: [m]\n"
            f"    description: &a [x, x, x, x, x, x, x, x, x]\n    {where}:\n{levels}")


HOSTILE_YAML = {
    "alias bomb (9^8 references)": _alias_bomb("metadata"),
    "alias bomb where a mapping is allowed": _alias_bomb("container"),
    "deep flow nesting": "providers: " + "[" * 5000 + "]" * 5000 + "\n",
    "deep block nesting": "providers:\n" + "".join(" " * i + "a:\n" for i in range(1, 400)),
    "a python tag": "providers: !!python/object/apply:os.system ['true']\n",
    "a merge key": "base: &b {type: vllm}\nproviders:\n  x:\n    <<: *b\n",
    "a second document": "providers: {}\n---\nproviders: {}\n",
    "a doubled top-level key": "providers: {}\nproviders: {}\n",
    "a NUL byte": "providers: {}\x00\n",
    "old Mac line ends": "providers:\r  x: 1\r",
    "a number where a mapping goes": "providers:\n  x: 5\n",
    "a date where a mapping goes": "providers:\n  x: 2024-01-01\n",
    "a file that is only a number": "5\n",
    "an over-long file": "providers: {}\n" + "#" * (5 * 1024 * 1024),
}


@pytest.mark.parametrize("text", list(HOSTILE_YAML.values()), ids=list(HOSTILE_YAML))
def test_hostile_yaml_is_a_located_problem(text: str) -> None:
    check_loaded({"providers.yaml": text})
    assert load_files({"providers.yaml": text}).errors, "hostile YAML must not be accepted"
