"""The state directory (`--state-dir`): lock, revision record, history, the gateway's config.

Edge of the pipeline: `reconcile` reads and writes the record and history through this,
and `apply` stages and swaps the gateway config here (`controller.ports.StateStore`,
`GatewayConfig`). Layout:

    lock                       flock'ed by the one controller using this directory
    record.json                the revision record (atomic: temp file, fsync, rename)
    applied.json               what the last applied commit runs (container specs, config): going
                               back to it needs no git
    history.jsonl              one JSON line per pass (fsynced appends; a torn last line is skipped)
    secret.key                 HMAC key for secret fingerprints (0600)
    gateway/config.yaml        the live LiteLLM config; the gateway mounts `gateway/` (0600)
    gateway/.staging/          where the next config is written and checked before the swap
    suspended                  present while `llm-gitops suspend` holds changes (JSON: when, why)
    loop.json                  what the running `llm-gitops run` is doing, for `status` (atomic)
    requests/<id>.json         `retry`/`rollback` asked of the running loop; `<id>.answer.json` its result

A crash at any instant leaves every file either old or new, never half written.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from controller.errors import Fault, StateError
from controller.record import Record
from controller.render import Desired

RECORD = "record.json"
OWNER_ID = re.compile(r"[0-9a-f]{16}")
SNAPSHOT = "applied.json"
HISTORY = "history.jsonl"


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Temp file in the same directory, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


_TEMP_PID = re.compile(r"\.(\d+)\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StateDir:
    """`create=False` (status, history): a directory that does not exist is an error, and
    nothing is written."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path).resolve()
        self.gateway_dir = self.path / "gateway"
        self._staged = self.gateway_dir / ".staging" / "config.yaml"
        self._live = self.gateway_dir / "config.yaml"
        if not create:
            if not (self.path / RECORD).is_file() and not (self.path / HISTORY).is_file():
                raise self._fault("no llm-gitops state here (no record.json)",
                                  "check --state-dir: it is the directory `llm-gitops apply` was given")
            return
        try:
            fresh = not self.path.exists()
            self.gateway_dir.mkdir(parents=True, exist_ok=True)
            (self.gateway_dir / ".staging").mkdir(exist_ok=True)
            if fresh:  # it holds the secret key and configs that may name secrets
                os.chmod(self.path, 0o700)
        except OSError as exc:
            raise self._fault(f"cannot create or use it: {exc.strerror or exc}",
                              "pass a --state-dir this user can write") from None

    def _fault(self, message: str, hint: str = "") -> StateError:
        return StateError(Fault(f"state dir {self.path}", message, hint))

    # ------------------------------------------------------------------ lock

    @contextlib.contextmanager
    def locked(self, what: str) -> Iterator[None]:
        """One controller per state dir. A second one fails at once, naming the first."""
        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
                if ", run," in holder:
                    raise self._fault(f"a running controller owns it ({holder})",
                                      "it applies new commits by itself: commit to the branch, or ask it with "
                                      "`llm-gitops retry` / `rollback`; to stop it, stop its service "
                                      "(SIGTERM)") from None
                raise self._fault(f"in use by another llm-gitops ({holder})",
                                  "one controller per state dir: wait for it or stop it, or use another "
                                  "--state-dir") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}, {what}, since {now()}\n".encode(), 0)
            self._remove_dead_writers_temp_files()
            yield
        finally:
            os.close(fd)  # closing releases the flock; a SIGKILL'ed holder releases it too

    def _remove_dead_writers_temp_files(self) -> None:
        """A `kill -9` inside `write_atomic` leaves `.<name>.<pid>.tmp` behind: harmless to
        readers, but nothing else would ever remove it. Only files of a writer that is gone
        go: `requests/` is written by CLI processes that may be alive now, and a pid that
        still runs (or that we cannot signal) keeps its file."""
        for directory in (self.path, self.gateway_dir, self.gateway_dir / ".staging", self.path / "requests"):
            with contextlib.suppress(OSError):
                for tmp in directory.glob(".*.tmp"):
                    found = _TEMP_PID.search(tmp.name)
                    if found and int(found.group(1)) != os.getpid() and not _alive(int(found.group(1))):
                        with contextlib.suppress(OSError):
                            tmp.unlink()

    # ------------------------------------------------------------------ record and history

    def record(self) -> Record:
        path = self.path / RECORD
        try:
            return Record.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            return Record()
        except (OSError, ValueError) as exc:
            raise self._fault(f"{RECORD} is not a readable record (cut off, or edited by hand?): {exc}",
                              f"move {path} away to start from an empty record (the running stack is "
                              "kept; the next pass re-plans from what runs)") from None
    def save(self, record: Record) -> None:
        try:
            write_atomic(self.path / RECORD, (json.dumps(record.as_dict(), indent=2, sort_keys=True) + "\n").encode())
        except OSError as exc:
            raise self._fault(f"cannot write {RECORD}: {exc.strerror or exc}",
                              "check the disk (full?) and the permissions of the state dir; the next pass plans from what runs") from None

    def append_history(self, entry: Mapping[str, Any]) -> None:
        line = json.dumps(dict(entry), sort_keys=True, separators=(",", ":")) + "\n"
        try:
            fd = os.open(self.path / HISTORY, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise self._fault(f"cannot write {HISTORY}: {exc.strerror or exc}",
                              "free disk space or fix permissions") from None
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = "\n" + line  # end a line torn by a crash, so this one stays whole
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def history(self) -> list[dict[str, Any]]:
        try:
            # bytes, line by line: a damaged line (torn by a crash, or not even UTF-8 after a
            # disk fault) costs that line, not the whole history
            lines = (self.path / HISTORY).read_bytes().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:  # UnicodeDecodeError included
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out

    def save_snapshot(self, commit: str, desired: Desired) -> None:
        body = {"commit": commit, "desired": desired.snapshot()}
        try:
            write_atomic(self.path / SNAPSHOT, json.dumps(body, sort_keys=True).encode())
        except OSError as exc:
            raise self._fault(f"cannot write {SNAPSHOT}: {exc.strerror or exc}",
                              "check the disk (full?) and the permissions of the state dir") from None

    def snapshot(self, commit: str | None = None) -> Desired | None:
        """What `commit` (default: whichever was applied last) runs, if this state dir kept it."""
        return self.snapshot_of(commit)[1]

    def snapshot_of(self, commit: str | None = None) -> tuple[str | None, Desired | None]:
        try:
            body = json.loads((self.path / SNAPSHOT).read_text())
            if commit is not None and body.get("commit") != commit:
                return None, None
            return str(body["commit"]), Desired.from_snapshot(body["desired"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None, None  # going back then renders the commit from git

    # ------------------------------------------------------------------ identity and secrets

    def owner_id(self, *, create: bool = True) -> str:
        """This state dir's id, in the labels of the containers its controller creates
        ("" when it has none yet and `create` is False: read-only commands write nothing)."""
        path = self.path / "owner"
        if create:
            data = self._created_once("owner", lambda: secrets.token_hex(8).encode())
        else:  # read it, never write it: a user may be removing a damaged one right now
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                return ""
            except OSError as exc:
                raise self._fault(f"cannot read {path}: {exc.strerror or exc}",
                                  "check the permissions of the state dir") from None
        value = data.decode("ascii", "replace").strip()
        if not OWNER_ID.fullmatch(value):
            # an empty or garbled id would go into the labels of every container made from now
            # on (an empty one drops the state-dir label too, and with it the one-state-dir check)
            raise self._fault(f"{path} is damaged (not the 16 hex digits llm-gitops writes)",
                              "remove it: the next pass writes a new id (containers already running are "
                              "recognised by the state dir's path)")
        return value

    def _created_once(self, name: str, make: Any) -> bytes:
        """A file written whole, once: a temp file linked into place (link fails if it
        exists), so two processes agree on one value and a crash never leaves it empty."""
        path = self.path / name
        if not path.exists():
            tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
            try:
                write_atomic(tmp, make())
                os.link(tmp, path)
            except FileExistsError:
                pass
            except OSError as exc:
                raise self._fault(f"cannot write {name}: {exc.strerror or exc}",
                                  "check the disk (full?) and the permissions of the state dir") from None
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink()
        return path.read_bytes()

    def fingerprints(self, names: set[str], environ: Mapping[str, str]) -> dict[str, str]:
        """HMAC-SHA256 of each secret's value under a key kept here: a rotated secret changes
        its containers' spec hashes, and the value itself is never hashed bare or stored."""
        key_path = self.path / "secret.key"
        key = self._created_once("secret.key", lambda: secrets.token_bytes(32))
        if len(key) != 32:
            raise self._fault(f"{key_path} is damaged", "remove it: the next pass makes a new key (containers that "
                              "receive secrets restart once)")
        return {n: hmac.new(key, environ[n].encode(), hashlib.sha256).hexdigest()[:32]
                for n in sorted(names) if environ.get(n)}

    # ------------------------------------------------------------------ the gateway's config

    def live_digest(self) -> str:
        """sha256 of the live file; "" when there is none (or it is not a readable file)."""
        try:
            return hashlib.sha256(self._live.read_bytes()).hexdigest()
        except OSError:
            return ""

    def stage(self, text: str) -> None:
        try:
            write_atomic(self._staged, text.encode())
        except OSError as exc:
            raise self._fault(f"cannot write {self._staged}: {exc.strerror or exc}",
                              "free disk space or fix permissions; the live config was not touched") from None

    def discard_staged(self) -> None:
        """Remove a staged config that will not be swapped in (its pass failed or was stopped):
        `.staging/config.yaml` exists only between a stage and its swap. Best effort: a file
        left by a crash is harmless (the next stage replaces it) and must not hide the error
        that ended the pass."""
        with contextlib.suppress(OSError):
            self._staged.unlink()

    def keep_live_copy(self) -> str:
        """Before the live file is replaced because it differs from the commit's: keep it,
        unless it is the file the controller itself swapped in last (an interrupted pass
        left it), which is no one's edit, nor a missing file. Returns where it was kept, or ""."""
        if not self._live.is_file():
            return ""
        try:
            if (self.gateway_dir / ".staging" / "swapped").read_text().strip() == self.live_digest():
                return ""
        except FileNotFoundError:
            pass
        target = self.path / f"gateway-config.edited-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.yaml"
        try:
            write_atomic(target, self._live.read_bytes())
        except OSError as exc:
            raise self._fault(f"cannot keep a copy of the hand-edited {self._live}: {exc.strerror or exc}",
                              "free disk space; the edited file was not replaced") from None
        return str(target)

    def check_staged(self, expected: Mapping[str, Any], digest: str) -> None:
        """The staged file is what was rendered, byte for byte, and parses back to it."""
        data = self._staged.read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise self._fault(f"staged {self._staged} does not match the rendered config (disk error?)",
                              "check the disk; nothing was swapped")
        try:
            parsed = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            raise self._fault(f"staged {self._staged} does not parse: {exc}", "report this: render made bad YAML") \
                from None
        if parsed != dict(expected):
            raise self._fault(f"staged {self._staged} parses to something else than was rendered",
                              "report this: a YAML round-trip bug")

    def swap(self) -> None:
        """os.replace into the directory the gateway mounts: it sees the old or the new file."""
        try:
            digest = hashlib.sha256(self._staged.read_bytes()).hexdigest()
            os.replace(self._staged, self._live)
            _fsync_dir(self.gateway_dir)
            write_atomic(self.gateway_dir / ".staging" / "swapped", digest.encode())
        except OSError as exc:
            raise self._fault(f"cannot swap in {self._live}: {exc.strerror or exc}",
                              "fix the state dir; the pass goes back to the last good commit") from None


class ControlFiles:
    """The files through which the CLI talks to a running loop (`controller.loop.Control`).
    Written without the lock (the loop holds it), each atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.requests = path / "requests"

    def _fault(self, message: str, hint: str = "") -> StateError:
        return StateError(Fault(f"state dir {self.path}", message, hint))

    def _read_json(self, path: Path) -> dict[str, Any] | None:
        try:
            body = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise self._fault(f"{path.name} is unreadable: {exc}", f"remove {path}") from None
        return body if isinstance(body, dict) else None

    def _write_json(self, path: Path, body: Mapping[str, Any]) -> None:
        try:
            write_atomic(path, (json.dumps(dict(body), indent=2, sort_keys=True) + "\n").encode())
        except OSError as exc:
            raise self._fault(f"cannot write {path.name}: {exc.strerror or exc}",
                              "check the disk (full?) and the permissions of the state dir") from None

    # suspend / resume
    def suspended(self) -> dict[str, Any] | None:
        return self._read_json(self.path / "suspended")

    def suspend(self, reason: str) -> dict[str, Any]:
        body = {"at": now(), "reason": reason, "by": f"{os.environ.get('USER', 'uid ' + str(os.getuid()))}"}
        self._write_json(self.path / "suspended", body)
        return body

    def resume(self) -> bool:
        try:
            (self.path / "suspended").unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(self.path)
        return True

    # requests to the loop
    def put_request(self, action: str, **fields: Any) -> str:
        rid = f"{int(time.time())}-{secrets.token_hex(4)}"
        self.requests.mkdir(mode=0o700, exist_ok=True)
        self._write_json(self.requests / f"{rid}.json", {"id": rid, "action": action, "at": now(), **fields})
        return rid

    def next_request(self) -> dict[str, Any] | None:
        """The oldest queued request (its file stays until `answer_request`). One that is not
        a JSON object is returned as `{"id": <file name>, "malformed": ...}`, to be answered."""
        if not self.requests.is_dir():
            return None
        for path in sorted(self.requests.glob("*.json")):
            if path.name.endswith(".answer.json"):
                continue
            rid = path.name.removesuffix(".json")
            try:
                body = json.loads(path.read_text())
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                return {"id": rid, "malformed": str(exc)}
            if not isinstance(body, dict):
                return {"id": rid, "malformed": f"a JSON {type(body).__name__}, not an object"}
            return {**body, "id": rid}
        return None

    def answer_request(self, request_id: str, answer: Mapping[str, Any]) -> None:
        """Write the answer, then remove the request; answers older than a day are removed."""
        self.requests.mkdir(mode=0o700, exist_ok=True)
        self._write_json(self.requests / f"{request_id}.answer.json", answer)
        with contextlib.suppress(FileNotFoundError):
            (self.requests / f"{request_id}.json").unlink()
        cutoff = time.time() - 86400
        for old in self.requests.glob("*.answer.json"):
            with contextlib.suppress(OSError):
                if old.stat().st_mtime < cutoff:
                    old.unlink()

    def answer(self, request_id: str) -> dict[str, Any] | None:
        return self._read_json(self.requests / f"{request_id}.answer.json")

    def pending(self, request_id: str) -> bool:
        return (self.requests / f"{request_id}.json").exists()

    def withdraw(self, request_id: str) -> bool:
        try:
            (self.requests / f"{request_id}.json").unlink()
            return True
        except FileNotFoundError:
            return False

    # what the loop is doing
    def save_loop_state(self, state: Mapping[str, Any]) -> None:
        self._write_json(self.path / "loop.json", {"pid": os.getpid(), **state})

    def loop_state(self) -> dict[str, Any] | None:
        return self._read_json(self.path / "loop.json")


def lock_holder(path: Path) -> str | None:
    """Who holds the state dir's lock now ("pid N, run, since ..."), or None when it is free."""
    try:
        fd = os.open(path / "lock", os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
        return None
    finally:
        os.close(fd)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
