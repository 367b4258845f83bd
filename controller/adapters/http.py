"""The controller's HTTP endpoint on 127.0.0.1: /healthz, /status, /metrics, POST /hooks/git.

Edge of the loop (`llm-gitops run`): a stdlib ThreadingHTTPServer in its own threads. It
only reads the loop's snapshot and the state dir, and `poke`s the loop on a verified push;
it never runs a pass itself. Loopback only: expose /hooks/git to a git host through a
reverse proxy that forwards just that path.

The webhook is GitHub's format: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw
body>` with the secret from the environment variable the settings name. A missing or
wrong signature gets 401 and starts nothing; without a secret configured the hook
answers 403 (refused, rather than accepted unsigned).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 1024 * 1024   # a push event is a few KB; anything past this is not one


def signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    """`header` is `sha256=<hex>` of HMAC-SHA256(secret, body); compared in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    want = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, header.removeprefix("sha256=").strip().lower())


@dataclass
class Endpoints:
    healthz: Callable[[], tuple[int, dict[str, Any]]]
    status: Callable[[], dict[str, Any]]
    metrics: Callable[[], str]
    push: Callable[[str], None]           # a verified push: look at the source now
    secret: Callable[[], bytes | None]    # the webhook secret, read when a hook arrives
    branch: str
    emit: Callable[..., None]


def serve(endpoints: Endpoints, port: int) -> ThreadingHTTPServer:
    """Listen on 127.0.0.1:`port` (0: any free port; read it from `server.server_port`)."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "llm-gitops"
        timeout = 10   # a client that sends its body slowly does not hold a thread forever

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            pass  # requests are not worth a log line each; the hook logs what it did

        def _send(self, code: int, body: Any, ctype: str = "application/json") -> None:
            data = (json.dumps(body, indent=2) + "\n").encode() if ctype == "application/json" else body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            path = self.path.split("?", 1)[0]
            try:
                if path == "/healthz":
                    self._send(*endpoints.healthz())
                elif path == "/status":
                    self._send(200, endpoints.status())
                elif path == "/metrics":
                    self._send(200, endpoints.metrics(), "text/plain; version=0.0.4; charset=utf-8")
                else:
                    self._send(404, {"error": f"no {path}; try /healthz, /status, /metrics or POST /hooks/git"})
            except Exception as exc:  # noqa: BLE001 - an endpoint must answer, not drop the connection
                self._send(500, {"error": f"{type(exc).__name__}: {exc}"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path.split("?", 1)[0] != "/hooks/git":
                self._send(404, {"error": "POST /hooks/git is the only POST"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self._send(400, {"error": "Content-Length is not a number"})
                return
            if length < 0 or length > MAX_BODY:
                self._send(413, {"error": f"body over {MAX_BODY} bytes"})
                return
            body = self.rfile.read(length) if length > 0 else b""
            secret = endpoints.secret()
            if not secret:
                endpoints.emit("webhook_refused", level="warning", why="no webhook secret is configured")
                self._send(403, {"error": "webhook disabled: set the secret's environment variable "
                                          "(settings: webhook_secret_env)"})
                return
            if not signature_ok(secret, body, self.headers.get("X-Hub-Signature-256")):
                endpoints.emit("webhook_refused", level="warning", why="missing or wrong X-Hub-Signature-256")
                self._send(401, {"error": "missing or wrong X-Hub-Signature-256 (HMAC-SHA256 of the body with "
                                          "the shared secret)"})
                return
            ref = _ref_of(body)
            if ref is not None and ref != f"refs/heads/{endpoints.branch}":
                self._send(202, {"accepted": False, "why": f"a push to {ref}; this controller follows "
                                                          f"refs/heads/{endpoints.branch}"})
                return
            endpoints.emit("webhook", github_event=self.headers.get("X-GitHub-Event"), ref=ref)
            endpoints.push("webhook")
            self._send(202, {"accepted": True})

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="llm-gitops-http", daemon=True).start()
    return server


def _ref_of(body: bytes) -> str | None:
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return None
    ref = payload.get("ref") if isinstance(payload, dict) else None
    return ref if isinstance(ref, str) else None
