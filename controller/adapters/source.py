"""Read a spec directory's files from disk or from a git commit: the `files` end of the pipeline.

Returns `{filename: text}` for the spec files that exist, for `controller.spec.load_files`.
A commit is read from git's object database, without a working-tree checkout, so reading
the base and head of a pull request never touches the user's files. `git.exc` errors are
translated into SourceError here and never leave this module.
"""

from __future__ import annotations

import os
import posixpath
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import git

from controller.errors import RevisionNotFound, SourceError
from controller.spec import FILES


SYMLINK = 0o120000  # git's mode for a symbolic link


def read_dir(path: str | Path) -> dict[str, str]:
    root = Path(path)
    if not root.exists():
        raise SourceError(f"{root}: does not exist; pass the spec directory (the one holding providers.yaml)")
    if not root.is_dir():
        raise SourceError(f"{root}: not a directory; pass the spec directory (the one holding providers.yaml)")
    out = {}
    for name in FILES:
        file = root / name
        if file.is_symlink():
            raise SourceError(f"{file}: a symbolic link; git stores the link, not the file, so the controller "
                              "would not see this content: commit the file itself")
        if file.exists() and not file.is_file():
            raise SourceError(f"{file}: not a file; the spec directory's {name} must be a YAML file")
        if file.is_file():
            try:
                out[name] = decode(file.read_bytes(), str(file))
            except OSError as exc:
                raise SourceError(f"{file}: cannot be read: {exc.strerror or exc}") from exc
    return out


def decode(data: bytes, where: str) -> str:
    """UTF-8 text, or a SourceError naming the line of the first byte that is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise SourceError(f"{where}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                          "save the file as UTF-8") from exc


def open_repo(path: str | Path) -> git.Repo:
    try:
        return git.Repo(path, search_parent_directories=True)
    except (git.exc.NoSuchPathError, git.exc.InvalidGitRepositoryError) as exc:
        raise SourceError(f"{path}: not a git repository; pass --repo the repository's top directory") from exc


def resolve(repo: git.Repo, rev: str) -> str:
    """The full commit id of `rev` (a branch, tag, short or full id, `HEAD~1`...)."""
    try:
        return repo.commit(rev).hexsha
    except (git.exc.BadName, git.exc.BadObject, ValueError) as exc:
        raise RevisionNotFound(f"{repo.working_dir or repo.git_dir}: revision `{rev}` not found; "
                          "fetch it first (e.g. `git fetch origin`) or check the name") from exc


def ancestors(repo: git.Repo, rev: str, *, limit: int) -> list[str]:
    """Up to `limit` first-parent ancestors of `rev`, newest first."""
    try:
        return [c.hexsha for c in repo.iter_commits(rev, max_count=limit + 1, first_parent=True)][1:]
    except (git.exc.GitCommandError, ValueError) as exc:
        raise SourceError(f"{repo.working_dir}: cannot walk the history of `{rev}`: {exc}") from exc


def is_ancestor(repo: git.Repo, a: str, b: str) -> bool:
    """Whether commit `a` is an ancestor of commit `b`; False when either is unknown."""
    try:
        return bool(repo.is_ancestor(a, b))
    except (git.exc.GitCommandError, ValueError):
        return False


def _relative(repo: git.Repo, subdir: str) -> str:
    """`--path` as a path inside the repository: `./specs/`, `specs` and `/abs/repo/specs` agree."""
    subdir = subdir.strip()
    top = Path(repo.working_tree_dir or ".").resolve()
    if Path(subdir).is_absolute():
        try:
            subdir = str(Path(subdir).resolve().relative_to(top))
        except ValueError:
            raise SourceError(f"--path {subdir}: outside the repository {top}") from None
    normal = posixpath.normpath(subdir or ".")
    if normal.startswith(".."):
        raise SourceError(f"--path {subdir}: outside the repository {top}")
    return "" if normal == "." else normal


def read_commit(repo: git.Repo, rev: str, subdir: str = "", *, missing_ok: bool = False) -> dict[str, str]:
    """The spec files at `subdir` of commit `rev`. `missing_ok`: a commit without that
    directory yields no files (a base from before the spec existed) instead of an error."""
    commit = repo.commit(resolve(repo, rev))
    tree = commit.tree
    subdir = _relative(repo, subdir)
    if subdir:
        try:
            tree = tree / subdir
        except KeyError as exc:
            if missing_ok:
                return {}
            raise SourceError(f"commit {commit.hexsha[:12]}: no directory `{subdir}`; check --path "
                              "(relative to the repository's top)") from exc
        if tree.type != "tree":
            raise SourceError(f"commit {commit.hexsha[:12]}: `{subdir}` is a file, not a directory; check --path")
    out = {}
    for name in FILES:
        try:
            blob = tree / name
        except KeyError:
            continue
        if blob.mode == SYMLINK:
            raise SourceError(f"commit {commit.hexsha[:12]}: {name} is a symbolic link; git stores the link, "
                              "not the file: commit the file itself")
        out[name] = decode(blob.data_stream.read(), f"commit {commit.hexsha[:12]}: {subdir + '/' if subdir else ''}{name}")
    return out


def is_url(repo: str) -> bool:
    return "://" in repo or (":" in repo and "@" in repo.split(":", 1)[0])  # scheme://... or user@host:path


def open_source(repo: str, state_dir: Path, *, fetch: bool = True) -> git.Repo:
    """`--repo PATH_OR_URL`: a local repository is read in place; a URL is mirrored into
    `<state-dir>/source.git` (bare: no working tree, spec files are read at a commit) and
    fetched on each call. `fetch=False` (read-only commands, which hold no lock) reads the
    mirror as the last pass left it."""
    if not is_url(repo):
        return open_repo(repo)
    mirror = state_dir / "source.git"
    try:
        if not fetch:
            if not mirror.exists():
                raise SourceError(f"{shown_url(repo)}: not fetched yet; run `llm-gitops apply` once, or pass a "
                                  "local clone as --repo")
            return git.Repo(mirror)
        if not mirror.exists():
            # bare, and branches only: a mirror would also fetch a forge's refs/pull/* on every change
            r = git.Repo.clone_from(repo, mirror, bare=True, env=_git_env())
            r.git.config("remote.origin.fetch", "+refs/heads/*:refs/heads/*")
            return r
        r = git.Repo(mirror)
        r.git.fetch("--prune", "origin")
        return r
    except git.exc.GitCommandError as exc:
        raise SourceError(f"{shown_url(repo)}: cannot fetch ({_git_error(exc.stderr or str(exc))}); check the URL "
                          "and credentials. The running stack is not changed") from None


def shown_url(repo: str) -> str:
    """A repository URL without its credentials (`https://user:token@host/x` -> `https://host/x`)."""
    if "://" not in repo:
        return repo
    parts = urlsplit(repo)
    if parts.username is None and parts.password is None:
        return repo
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")))


# --------------------------------------------------------------------------- the loop's source

GIT_TIMEOUT_S = 60   # a hung remote (a firewall dropping packets) must not hang the loop


def _git_env() -> dict[str, str]:
    """Never wait for a password prompt: unattended, a prompt is a hang."""
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=20")
    return env


def _run_git(args: list[str], *, cwd: str | None = None, env: dict[str, str] | None = None,
             timeout: float = GIT_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, env=env or _git_env(), capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise SourceError(f"git {args[0]}: no answer within {timeout:.0f} s") from None
    except OSError as exc:
        raise SourceError(f"git cannot run: {exc}; install git") from None


def _git_error(text: str) -> str:
    """The line of git's stderr that says what failed (`fatal: ...`), not its advice after it."""
    lines = [line.strip().strip("'\"") for line in text.strip().splitlines() if line.strip().strip("'\"")]
    for line in lines:
        if line.startswith(("fatal:", "error:", "ERROR:")):
            return line
    return lines[0] if lines else "no message"


class GitSource:
    """`--repo` and `--branch` for `llm-gitops run` (`controller.loop.Source`).

    A local repository is read in place (its objects; never its working tree). A URL is
    mirrored into `<state-dir>/source.git`: `peek` asks the remote with `git ls-remote`
    (cheap: one round trip, no objects), and `current(fetch=True)` fetches only when the
    remote head differs from the mirror's. `peek` runs in the poller's and the watcher's
    threads, so it uses a git subprocess and no shared gitpython object."""

    def __init__(self, repo: str, state_dir: Path, branch: str, *, strict: bool = True) -> None:
        """`strict`: a local repository without the branch is an error now (a typo at the first
        start); otherwise (a stack is served already) it is reported and the stack kept."""
        self.arg, self.state_dir, self.branch = repo, state_dir, branch
        self.ref = f"refs/heads/{branch}"
        self.url = repo if is_url(repo) else None
        self._repo: git.Repo | None = None
        if self.url is None:
            self._repo = open_repo(repo)
            self.git_dir = Path(self._repo.git_dir)
            if strict:
                self._check_branch()
        else:
            self.git_dir = state_dir / "source.git"

    @property
    def shown(self) -> str:
        return shown_url(self.url) if self.url else str(Path(self.arg).resolve())

    def _check_branch(self) -> None:
        assert self._repo is not None
        if self.ref not in {r.path for r in self._repo.references}:
            heads = sorted(h.name for h in self._repo.heads)
            raise SourceError(f"{self.shown}: no branch `{self.branch}`"
                              + (f" (it has: {', '.join(heads)}); pass --branch" if heads else " (no commits yet)"))

    @property
    def repo(self) -> git.Repo:
        """The gitpython repository the main thread reads commits from (the mirror for a URL)."""
        if self._repo is None:
            self._repo = open_source(self.arg, self.state_dir, fetch=False) if self.git_dir.exists() else \
                open_source(self.arg, self.state_dir, fetch=True)
        return self._repo

    def peek(self) -> str:
        if self.url is None:
            done = _run_git(["rev-parse", "--verify", "--quiet", f"{self.ref}^{{commit}}"], cwd=str(self.git_dir))
            if done.returncode != 0:
                raise self._gone()
            return done.stdout.strip()
        done = _run_git(["ls-remote", "--exit-code", self.url, self.ref])
        if done.returncode == 2:
            raise self._gone()
        if done.returncode != 0:
            raise SourceError(f"{self.shown}: cannot reach the remote ({_git_error(done.stderr)}); check the URL, "
                              "the network and the credentials. The stack keeps serving")
        return done.stdout.split()[0]

    def _local_head(self) -> str | None:
        try:
            return str(self.repo.commit(self.ref).hexsha)
        except (git.exc.BadName, git.exc.BadObject, ValueError):
            return None

    def current(self, *, fetch: bool) -> str:
        if self.url is not None and (fetch or not self.git_dir.exists()):
            if not self.git_dir.exists():
                self._repo = open_source(self.arg, self.state_dir, fetch=True)   # the first clone
            else:
                remote = self.peek()
                if remote != self._local_head():
                    self._fetch()
        head = self._local_head()
        if head is None:
            raise self._gone()
        return head

    def _gone(self) -> SourceError:
        where = " on the remote" if self.url else ""
        return SourceError(f"{self.shown}: branch `{self.branch}` does not exist{where} any more (deleted?); "
                           "the stack keeps serving the last applied commit")

    def _fetch(self) -> None:
        done = _run_git(["fetch", "--prune", "origin"], cwd=str(self.git_dir))
        if done.returncode != 0:
            raise SourceError(f"{self.shown}: cannot fetch ({_git_error(done.stderr)}); check the URL and "
                              "credentials. The stack keeps serving")

    def verify(self, commit: str, *, allowed_signers: str | None, gpg_home: str | None) -> str | None:
        """Why `git verify-commit` does not accept `commit`, or None when it does."""
        # Only the trust the settings name: SSH signatures against `allowed_signers` (none when
        # unset), GPG ones against `gpg_home` (an empty keyring when unset, never the
        # controller's own ~/.gnupg, which would accept any key it happens to hold).
        args = ["-c", f"gpg.ssh.allowedSignersFile={allowed_signers or os.devnull}"]
        env = _git_env()
        with tempfile.TemporaryDirectory(prefix="llm-gitops-nokeys-") as empty:
            env["GNUPGHOME"] = gpg_home or empty
            done = _run_git([*args, "verify-commit", "--raw", commit], cwd=str(self.git_dir), env=env)
        if done.returncode == 0:
            return None
        body = _run_git(["cat-file", "commit", commit], cwd=str(self.git_dir), env=env)
        if "\ngpgsig " not in "\n" + body.stdout.split("\n\n", 1)[0]:
            return (f"commit {commit[:12]} is not signed; sign it (git commit -S) with a key in the allowed "
                    "signers, or push a signed commit on top")
        why = _git_error(done.stderr) if done.stderr.strip() else "the signature does not verify"
        return (f"commit {commit[:12]} is signed, but git verify-commit does not accept it ({why}); add the "
                "signer's key to the allowed signers (or keyring) and run `llm-gitops retry`")
