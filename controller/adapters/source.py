"""Read a spec directory's files from disk or from a git commit: the `files` end of the pipeline.

Returns `{filename: text}` for the spec files that exist, for `controller.spec.load_files`.
A commit is read from git's object database, without a working-tree checkout, so reading
the base and head of a pull request never touches the user's files. `git.exc` errors are
translated into SourceError here and never leave this module.
"""

from __future__ import annotations

import posixpath
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
            return git.Repo.clone_from(repo, mirror, mirror=True)
        r = git.Repo(mirror)
        r.git.fetch("--prune", "origin")
        return r
    except git.exc.GitCommandError as exc:
        detail = (exc.stderr or str(exc)).strip().splitlines()[-1:] or [""]
        raise SourceError(f"{shown_url(repo)}: cannot fetch ({detail[0].strip()}); check the URL and credentials. "
                          "The running stack is not changed") from None


def shown_url(repo: str) -> str:
    """A repository URL without its credentials (`https://user:token@host/x` -> `https://host/x`)."""
    if "://" not in repo:
        return repo
    parts = urlsplit(repo)
    if parts.username is None and parts.password is None:
        return repo
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")))
