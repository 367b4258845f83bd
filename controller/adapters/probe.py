"""Health endpoints and ports, probed from the controller's host: `controller.ports.Prober`.

Edge of the pipeline (apply's health gates, the port check before a plan runs). HTTP with
the standard library: one GET, a short timeout, 2xx is healthy. Redis: PING, `+PONG` is
healthy. Only the addresses of the stack's own containers are probed (the spec's rules
keep them on this host).
"""

from __future__ import annotations

import errno
import socket
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from controller.render.containers import Health

TIMEOUT_S = 2.0


class NetProber:
    def __init__(self, timeout_s: float = TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        # Never through a proxy: these are the host's own containers.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def healthy(self, health: Health) -> tuple[bool, str]:
        """(ok, what was seen), e.g. (False, "connection refused")."""
        if health.kind == "redis":
            return self._redis(health.url)
        try:
            with self._opener.open(health.url, timeout=self.timeout_s) as resp:
                return 200 <= resp.status < 300, f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            return False, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return False, _reason(exc)
        except Exception as exc:  # noqa: BLE001 - http.client.HTTPException and kin: a garbled answer
            return False, f"not an HTTP answer ({type(exc).__name__})"

    def _redis(self, url: str) -> tuple[bool, str]:
        parts = urlsplit(url)
        try:
            with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379),
                                          timeout=self.timeout_s) as sock:
                sock.sendall(b"PING\r\n")
                answer = sock.recv(64)
        except OSError as exc:
            return False, _reason(exc)
        return answer.startswith(b"+PONG"), answer.decode("ascii", "replace").strip() or "no answer"

    def port_taken(self, host: str, port: int) -> bool:
        """Whether binding host:port fails because something listens there. An address this
        host does not have (a container placed elsewhere) is not ours to judge: False."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT leftovers
            try:
                sock.bind((host or "0.0.0.0", port))
            except OSError as exc:
                return exc.errno == errno.EADDRINUSE
        return False


def _reason(exc: BaseException) -> str:
    inner = getattr(exc, "reason", exc)
    text = getattr(inner, "strerror", None) or str(inner)
    return str(text).lower()
