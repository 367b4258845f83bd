"""A private Docker daemon for the one fault that needs its engine restarted mid-pass.

Other tests (and other people's) share the machine's dockerd, so restarting that one is not
an option. This starts a second `dockerd` with its own data root, exec root (and with it its
own containerd), pid file and socket under a short /tmp directory, with no bridge and no
iptables rules (`--bridge=none --iptables=false`, as `make engine` runs the main one; every
container uses the host network anyway), and an empty config file so the host's
daemon.json does not apply. The stub image is copied into it (`docker save | docker load`).

`stop()` removes every container of this daemon (all of them are the test's: nobody else
knows its socket), stops the daemon, unmounts what it left mounted under its directory and
removes the directory; each wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import docker

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class PrivateEngine:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="llmg-dockerd-", dir="/tmp"))  # a unix socket path is short
        self.sock = self.dir / "docker.sock"
        self.url = f"unix://{self.sock}"
        self.log = self.dir / "dockerd.log"
        (self.dir / "daemon.json").write_text("{}\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: Any = None
        self.restarts = 0

    # ------------------------------------------------------------------ the daemon

    def start(self) -> None:
        argv = ["dockerd", "--config-file", str(self.dir / "daemon.json"), "--data-root", str(self.dir / "data"),
                "--exec-root", str(self.dir / "exec"), "--pidfile", str(self.dir / "docker.pid"),
                "-H", self.url, "--bridge=none", "--iptables=false", "--ip6tables=false"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the private dockerd exited ({self.proc.returncode}): {self.tail(40)}")
            with contextlib.suppress(Exception):
                client = docker.DockerClient(base_url=self.url, timeout=120)
                client.ping()
                self.client = client
                return
            time.sleep(0.2)
        raise RuntimeError(f"the private dockerd did not answer within {START_TIMEOUT_S:.0f} s: {self.tail()}")

    def _stop_daemon(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # as `systemctl restart docker` does
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self) -> float:
        """Stop the daemon and start it again; returns how long it did not answer (seconds)."""
        t0 = time.monotonic()
        self._stop_daemon()
        # dockerd may exit before the containerd it started has: a new one on the same root
        # would wait on the old one's database lock until dockerd gives up on it
        self._stop_containerd(grace_s=10.0)
        self.start()
        self.restarts += 1
        return time.monotonic() - t0

    def tail(self, lines: int = 15) -> str:
        """The daemon's last log lines, without grpc's connection chatter."""
        with contextlib.suppress(OSError):
            text = [ln for ln in self.log.read_text(errors="replace").splitlines() if "[core]" not in ln]
            return "\n".join(text[-lines:])
        return ""

    # ------------------------------------------------------------------ images

    def load(self, image: str) -> None:
        """`docker save image | docker -H <private> load`, from the machine's engine."""
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        try:
            loaded = subprocess.run(["docker", "-H", self.url, "load", "-q"], stdin=save.stdout,
                                    capture_output=True, text=True, timeout=300)
        finally:
            assert save.stdout is not None
            save.stdout.close()
            save.wait(timeout=60)
        if loaded.returncode != 0 or save.returncode != 0:
            raise RuntimeError(f"could not copy {image} into the private engine: {loaded.stderr.strip()}")

    # ------------------------------------------------------------------ teardown

    def stop(self) -> None:
        if self.client is not None and self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                for c in self.client.api.containers(all=True):
                    with contextlib.suppress(Exception):
                        self.client.api.remove_container(c["Id"], force=True)
            with contextlib.suppress(Exception):
                self.client.close()
        self._stop_daemon()
        self._stop_containerd()
        self._kill_orphans()
        self._unmount()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _kill_orphans(self) -> None:
        """A daemon that died (or was killed) with containers running leaves their shims and
        processes behind: found by the shim's command line, which names this daemon's own
        directory, and killed by pid, the container's processes first."""
        shims = [pid for pid, cmd in _processes().items() if "containerd-shim" in cmd and str(self.dir) in cmd]
        for shim in shims:
            for pid in _children(shim):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(shim, signal.SIGKILL)

    def _stop_containerd(self, grace_s: float = 0.0) -> None:
        """The containerd this dockerd started stops with it, a little later; if it has not
        after `grace_s` (or the daemon was killed), SIGTERM, then SIGKILL it: found by its pid
        file, and only if its command line names this daemon's own directory. Then the pid
        file goes: a dead containerd left as a zombie (this machine's PID 1 does not reap at
        once) still "runs" for the next dockerd, which would wait on it until it gives up."""
        pidfile = self.dir / "exec" / "containerd" / "containerd.pid"
        try:
            pid = int(pidfile.read_text().strip())
            ours = str(self.dir) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError):
            ours = False  # no pid file, no such process, or a zombie (its cmdline is empty)
        if ours:
            for sig, wait_s in ((None, grace_s), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
                if sig is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
                deadline = time.monotonic() + wait_s
                while _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if not _alive(pid):
                    break
        pidfile.unlink(missing_ok=True)

    def _unmount(self) -> None:
        """What the daemon left mounted under its directory (its network namespace file, and
        overlay mounts if it died without cleaning up), deepest first."""
        with contextlib.suppress(OSError):
            mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
            for target in sorted((m for m in mounts if m.startswith(str(self.dir) + "/")), key=len, reverse=True):
                subprocess.run(["umount", "-l", target], capture_output=True, timeout=30)


def _alive(pid: int) -> bool:
    """Running, not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _processes() -> dict[int, str]:
    """pid -> command line, of every process this user can see."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return out


def _children(parent: int) -> list[int]:
    """Every descendant of `parent`, deepest first."""
    ppid = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [], [parent]
    while frontier:
        kids = [pid for pid, pp in ppid.items() if pp in frontier]
        found[:0] = kids
        frontier = kids
    return found
