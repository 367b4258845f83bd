"""The revision record and history entries: what the state directory remembers, as plain data.

Written by `reconcile` after each pass (through `controller.ports.StateStore`), read by
`status`, `history`, `rollback` and `retry`. Pure: serialising to files is the state
adapter's job.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError


@dataclass(frozen=True)
class Quarantine:
    reason: str
    at: str            # RFC 3339, when it failed


@dataclass(frozen=True)
class Record:
    repo: str = ""                 # where the spec repo is (path or URL), for rollback/retry
    rev: str = ""                  # the revision apply was given (a branch, or HEAD)
    path: str = ""                 # the spec directory inside it
    last_attempted: str | None = None
    last_applied: str | None = None
    last_good: str | None = None
    good_trail: tuple[str, ...] = ()          # earlier good commits, newest first (rollback's default)
    quarantined: dict[str, Quarantine] = field(default_factory=dict)
    pinned: str | None = None      # `rollback --to`: serve this commit...
    pinned_head: str | None = None  # ...until the branch head moves past this one (or `retry`)
    host_name: str | None = None   # apply's --host-name, for rollback/retry
    # A pass that started applying and never finished (killed, timed out): after a few on the
    # same commit, that commit is quarantined rather than tried forever.
    inflight: str | None = None
    inflight_attempts: int = 0
    applied_hashes: dict[str, str] = field(default_factory=dict)  # container name -> spec hash of last_applied
    applied_config_digest: str = ""
    applied_stack: str = ""

    def as_dict(self) -> dict[str, Any]:
        body = dataclasses.asdict(self)
        body["good_trail"] = list(self.good_trail)
        return body

    @classmethod
    def from_dict(cls, body: Any) -> Record:
        """Raises ValueError (naming the field) for a body of the wrong shape."""
        if not isinstance(body, dict):
            raise ValueError(f"expected a JSON object, found {type(body).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return _RECORD.validate_python({k: v for k, v in body.items() if k in known}, strict=False)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise ValueError(f"{where}: {first['msg']}") from None

    def with_good(self, commit: str, *, keep: int = 20) -> Record:
        trail = self.good_trail
        if self.last_good and self.last_good != commit:
            trail = (self.last_good, *[c for c in trail if c != self.last_good])[:keep]
        return dataclasses.replace(self, last_good=commit, good_trail=tuple(c for c in trail if c != commit))


_RECORD: TypeAdapter[Record] = TypeAdapter(Record)
