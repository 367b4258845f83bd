"""Signed-commit mode against real git, real SSH keys and a real GnuPG keyring: only the
trust the settings name is used (never the controller's own keyring), and every refusal
says why. The loop's use of it runs end to end in tests/engine/test_loop.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import GitRepo
from controller.adapters.source import GitSource



@pytest.fixture(autouse=True)
def _tools() -> None:
    if not (shutil.which("ssh-keygen") and shutil.which("gpg")):
        if os.environ.get("CI"):
            pytest.fail("CI must have ssh-keygen and gpg (openssh-client, gnupg)", pytrace=False)
        pytest.skip("needs ssh-keygen and gpg (openssh-client, gnupg)")


def _ssh_key(where: Path, name: str) -> Path:
    key = where / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key


@pytest.fixture
def gnupg() -> Iterator[tuple[Path, str]]:
    """A GnuPG home with one signing key (short path: gpg-agent's socket must fit)."""
    home = Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))
    home.chmod(0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "T <t@example.invalid>", "ed25519",
                    "sign", "never"], env=env, check=True, capture_output=True)
    out = subprocess.run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env=env, check=True,
                         capture_output=True, text=True).stdout
    fpr = next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))
    try:
        yield home, fpr
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def _commit(repo: GitRepo, message: str, *config: str, env: dict[str, str] | None = None) -> str:
    args = [a for c in config for a in ("-c", c)]
    subprocess.run(["git", *args, "commit", "-q", "--allow-empty", "-m", message], cwd=repo.path, check=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid", **(env or {})})
    return repo._git("rev-parse", "HEAD")


def test_only_the_named_signers_are_trusted(repo: GitRepo, tmp_path: Path, gnupg: tuple[Path, str]) -> None:
    repo.commit({"providers.yaml": "providers: {}\n"}, "first")
    allowed, other = _ssh_key(tmp_path, "allowed"), _ssh_key(tmp_path, "other")
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"t@example.invalid {allowed.with_suffix('.pub').read_text()}")
    home, fpr = gnupg
    unsigned = _commit(repo, "unsigned")
    by_allowed = _commit(repo, "ssh, allowed", "gpg.format=ssh", f"user.signingkey={allowed}", "commit.gpgsign=true")
    by_other = _commit(repo, "ssh, not allowed", "gpg.format=ssh", f"user.signingkey={other}", "commit.gpgsign=true")
    by_gpg = _commit(repo, "gpg", "gpg.format=openpgp", f"user.signingkey={fpr}", "commit.gpgsign=true",
                     env={"GNUPGHOME": str(home)})
    src = GitSource(str(repo.path), tmp_path / "state", "main")

    def ssh(c: str) -> str | None:
        return src.verify(c, allowed_signers=str(signers), gpg_home=None)

    def gpg(c: str) -> str | None:
        return src.verify(c, allowed_signers=None, gpg_home=str(home))

    assert ssh(by_allowed) is None and gpg(by_gpg) is None
    assert "is not signed" in str(ssh(unsigned)) and "is not signed" in str(gpg(unsigned))
    refused = str(ssh(by_other))
    assert refused.startswith(f"commit {by_other[:12]} is signed, but git verify-commit does not accept it")
    assert "allowed signers" in refused
    # SSH mode does not fall back to a GnuPG keyring, even one the controller's environment names
    os.environ["GNUPGHOME"] = str(home)
    try:
        assert ssh(by_gpg) is not None
    finally:
        del os.environ["GNUPGHOME"]
    assert gpg(by_allowed) is not None  # and GPG mode trusts no SSH key
