"""Health endpoints and ports, probed from the controller's host: `controller.ports.Prober`.

Edge of the pipeline (apply's health gates, the port check before a plan runs, the gateway's
list of models for the canary and the check after the swap). HTTP with the standard library:
one GET, a short timeout, 2xx is healthy. Redis: PING, `+PONG` is healthy. Only the
addresses of the stack's own containers are probed (the spec's rules keep them on this host).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit

from controller.render.containers import Health

TIMEOUT_S = 2.0
MODELS_TIMEOUT_S = 10.0  # /v1/models reads the router's list, no backend; a booting proxy may be slow


class NetProber:
    """`environ` holds the gateway's master key (the controller's own environment by default)."""

    def __init__(self, timeout_s: float = TIMEOUT_S, environ: Mapping[str, str] | None = None) -> None:
        self.timeout_s = timeout_s
        self.environ = os.environ if environ is None else environ
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

    def served_models(self, base_url: str, key_env: str | None) -> tuple[list[str] | None, str]:
        """(ids listed on /v1/models, what was seen); (None, why) when there is no list."""
        headers = {"Accept": "application/json"}
        key = self.environ.get(key_env or "", "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(base_url.rstrip("/") + "/v1/models", headers=headers)
        try:
            with self._opener.open(req, timeout=MODELS_TIMEOUT_S) as resp:
                body = json.loads(resp.read())
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                return None, "HTTP 200 without a `data` list"
            return sorted(str(m.get("id")) for m in data if isinstance(m, dict)), f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            return None, f"HTTP {exc.code}" + (" (the master key was refused)" if exc.code in (401, 403) else "")
        except (urllib.error.URLError, OSError) as exc:
            return None, _reason(exc)
        except ValueError:
            return None, "not JSON"
        except Exception as exc:  # noqa: BLE001 - http.client.HTTPException and kin: a garbled answer
            return None, f"not an HTTP answer ({type(exc).__name__})"

    def free_port(self, host: str) -> int:
        """A port nothing listens on now; the engine binds it a moment later (a race with
        another process is possible, and then the canary fails to listen and says so)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            return int(sock.getsockname()[1])

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
