"""YAML loading that remembers where every key and value came from.

First step of the pipeline (files -> Spec). PyYAML's safe constructors build the data;
our mapping and sequence types carry the `line:column` of each key and item, so that
any later finding (a pydantic error, a cross-file rule) can name `file:line:column`.
Pure: text in, data out; no file or network access.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import yaml

from controller.errors import Problem

# Anything larger is not a hand-written spec; refusing it keeps alias bombs cheap.
MAX_BYTES = 4 * 1024 * 1024
Pos = tuple[int, int]  # 1-based line, column


class PosDict(dict):  # type: ignore[type-arg]
    """A dict that knows the position of each key (`key_pos`) and of itself (`pos`)."""

    pos: Pos = (1, 1)
    key_pos: dict[Hashable, Pos]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_pos = {}


class PosList(list):  # type: ignore[type-arg]
    """A list that knows the position of each item (`item_pos`) and of itself (`pos`)."""

    pos: Pos = (1, 1)
    item_pos: list[Pos]

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_pos = []


class SourceInt(int):
    """An int that remembers how it was written: `0755` is 493 to YAML 1.1, but an env value
    or an argument must reach the container as the text the user wrote."""

    source: str = ""


class SourceFloat(float):
    """A float that remembers how it was written (`1.10` stays `1.10`, not `1.1`)."""

    source: str = ""


def _mark(node: yaml.Node) -> Pos:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


# libyaml's parser is ~10x faster than PyYAML's pure-Python one and gives the same marks;
# construction stays in Python (SafeConstructor) either way, so behaviour is identical.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """A safe loader whose mappings and sequences record positions and refuse duplicate keys."""

    def __init__(self, stream: str, filename: str, subject: Callable[[tuple[Any, ...]], str]) -> None:
        super().__init__(stream)
        self.filename = filename
        self.subject = subject
        self.path: list[Any] = []  # where construction is, to name a duplicate key's subject
        self.duplicates: list[Problem] = []
        self.last: yaml.Node | None = None  # the node being built, to locate constructor errors

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        self.last = node
        return super().construct_object(node, deep=deep)

    def construct_source_int(self, node: yaml.ScalarNode) -> SourceInt:
        value = SourceInt(self.construct_yaml_int(node))
        value.source = node.value
        return value

    def construct_source_float(self, node: yaml.ScalarNode) -> SourceFloat:
        value = SourceFloat(self.construct_yaml_float(node))
        value.source = node.value
        return value

    def construct_pos_mapping(self, node: yaml.MappingNode) -> PosDict:
        explicit = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
        self.flatten_mapping(node)  # resolves `<<:` merge keys in place, putting merged pairs first
        merged = len(node.value) - explicit
        result = PosDict()
        result.pos = _mark(node)
        yield result
        from_merge: set[Hashable] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable) or isinstance(key, (PosDict, PosList)):
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain scalar", key_node.start_mark
                )
            if index < merged:
                from_merge.add(key)
            elif key in from_merge:  # an explicit key overrides a merged one: that is what `<<` is for
                from_merge.discard(key)
                result.key_pos.pop(key, None)
            elif key in result:
                line, col = _mark(key_node)
                first = result.key_pos[key]
                self.duplicates.append(
                    Problem(self.filename, line, col, self.subject((*self.path, key)),
                            f"duplicate key (first defined at line {first[0]})",
                            "remove one of them; YAML would silently keep only the last")
                )
            self.path.append(key)
            result[key] = self.construct_object(value_node, deep=True)
            self.path.pop()
            result.key_pos.setdefault(key, _mark(key_node))

    def construct_pos_sequence(self, node: yaml.SequenceNode) -> PosList:
        result = PosList()
        result.pos = _mark(node)
        yield result
        for i, child in enumerate(node.value):
            self.path.append(i)
            result.append(self.construct_object(child, deep=True))
            self.path.pop()
            result.item_pos.append(_mark(child))


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_pos_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_pos_sequence)
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_source_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_source_float)


def load(text: str, filename: str,
         subject: Callable[[tuple[Any, ...]], str] = lambda loc: ".".join(map(str, loc))
         ) -> tuple[Any, list[Problem]]:
    """Parse one YAML document. Returns the data (None when unusable) and the problems found.

    Never raises: every YAML failure, however odd the input, becomes a Problem with a position.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        return None, [Problem(filename, 1, 1, filename, f"file is larger than {MAX_BYTES} bytes",
                              "a spec file is hand-written configuration; split or trim it")]
    loader = None
    try:
        loader = _Loader(text, filename, subject)
        data = loader.get_single_data()
    except yaml.reader.ReaderError as exc:  # a control character: pure Python and libyaml both say so
        line, col = _line_col(text, exc.position)
        return None, [Problem(filename, line, col, "YAML syntax", f"character U+{exc.character:04X} is not allowed in YAML",
                              "remove the control character (or save the file as UTF-8 text)")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(s for s in (exc.context, exc.problem) if s) or "invalid YAML"
        hint = "fix the YAML syntax at this position (indentation, quotes, colons)"
        if _tab_before(text, line, col):
            what, hint = "a tab character: YAML indents with spaces only", "replace the tab with spaces"
        return None, [Problem(filename, line, col, "YAML syntax", what, hint)]
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        # Constructors raise plain ValueError on e.g. an impossible `2020-13-45` timestamp.
        line, col = _mark(loader.last) if loader is not None and loader.last is not None else (1, 1)
        return None, [Problem(filename, line, col, "YAML syntax", f"cannot be read: {exc}",
                              "quote values that YAML would otherwise interpret (dates, numbers)")]
    except RecursionError:
        return None, [Problem(filename, 1, 1, "YAML syntax", "nesting is too deep (self-referencing aliases?)",
                              "remove anchors that refer to themselves")]
    finally:
        if loader is not None:
            loader.dispose()
    return data, loader.duplicates


def _tab_before(text: str, line: int, col: int) -> bool:
    """libyaml reports a tab as "a character that cannot start any token"; name it."""
    lines = text.splitlines()
    return 0 < line <= len(lines) and "\t" in lines[line - 1][:col]


def _line_col(text: str, index: int) -> Pos:
    before = text[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


def position(data: Any, loc: Sequence[Any]) -> Pos:
    """The position of the deepest part of `loc` (a pydantic-style path) that exists in `data`.

    For a mapping key the key's own position is returned: that is where a reader looks.
    """
    best: Pos = getattr(data, "pos", (1, 1))
    node = data
    for part in loc:
        if isinstance(node, PosDict) and part in node:
            best = node.key_pos.get(part, best)
            node = node[part]
        elif isinstance(node, PosList) and isinstance(part, int) and 0 <= part < len(node):
            best = node.item_pos[part]
            node = node[part]
        else:
            break
    return best


def plain_scalar(value: Any) -> Any:
    """A position-carrying int or float of this loader, as a plain one; anything else as is."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value
