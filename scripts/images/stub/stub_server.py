"""A stand-in for vLLM, Ollama and llama.cpp servers, for tests and the demo (no GPU, no model).

Standard library only: it runs as PID 1 of `llm-gitops-test/stub`. It speaks just enough of
each server's HTTP API for LiteLLM and the controller's health gates: `/health` (and LiteLLM's `/health/liveliness`, so it can stand in for the gateway too), `/v1/models`,
`/v1/chat/completions` (also streamed), `/v1/completions`, `/api/version`, `/api/tags`,
`/api/chat`, `/api/generate`, under any path prefix. It takes the listen flags of vLLM and
llama.cpp (`--host`, `--port`, `--served-model-name`, `--alias`, `--model`/`-m`) and Ollama's
`OLLAMA_HOST`, and ignores every other flag, so a spec for a real GPU host runs unchanged.
Standing in for the gateway (`--config FILE`, as LiteLLM is started), it lists the file's
model names and aliases on /v1/models, read once at start as LiteLLM does.
`GET /stub/requests` says how many completions it has answered (the cache tests count them).

Knobs, from the environment, to fail on purpose:
  STUB_UNHEALTHY=1       health endpoints answer 503 (and chat too), forever
  STUB_START_DELAY=S     listen only after S seconds (a slow cold start)
  STUB_EXIT_AFTER=S      exit with status 3 after S seconds (0: at once, before listening)
  STUB_REPLY=TEXT        the completion text (default: "stub <model> on <host>:<port>")
  STUB_LOG_ENV=1         print the whole environment at start, as servers print their settings
SIGTERM ends it at once: a PID 1 that ignores it makes every `docker stop` wait 10 s.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse_args(argv: list[str]) -> dict[str, object]:
    host, port, names = "127.0.0.1", 8000, []
    model = None
    ollama = os.environ.get("OLLAMA_HOST")
    if ollama:
        ollama = ollama.removeprefix("http://")
        h, _, p = ollama.rpartition(":")
        host, port = (h or host).strip("[]"), int(p)
    i = 0
    while i < len(argv):
        arg, value = argv[i], argv[i + 1] if i + 1 < len(argv) else None
        if "=" in arg and arg.startswith("--"):
            arg, value = arg.split("=", 1)
            i -= 1
        if arg == "--host":
            host = value or host
        elif arg == "--port":
            port = int(value or port)
        elif arg in ("--served-model-name", "--alias", "-a"):
            j = i + 1
            while j < len(argv) and not argv[j].startswith("-"):
                names.append(argv[j])
                j += 1
            i = j - 1
        elif arg in ("--model", "-m"):
            model = value
        elif arg == "--config" and value:
            names += gateway_names(value)
        i += 1
    if not names and model:
        names.append(model)
    return {"host": host, "port": port, "names": names or ["stub-model"]}


def gateway_names(path: str) -> list[str]:
    """Model names and aliases of a LiteLLM config as llm-gitops renders it (block YAML, one
    `- model_name: X` per deployment, `model_group_alias:` a mapping). No YAML library in
    this image: a line reader for that one shape. An unreadable file lists nothing."""
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError:
        return []
    unquote = lambda v: v.strip().strip("'\"")  # noqa: E731
    names: list[str] = []
    alias_indent = None
    for line in lines:
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if alias_indent is not None:
            if stripped and indent > alias_indent and ":" in stripped:
                names.append(unquote(stripped.split(": ", 1)[0].rstrip(":")))
                continue
            alias_indent = None
        if stripped.startswith("- model_name:"):
            names.append(unquote(stripped.split(":", 1)[1]))
        elif stripped == "model_group_alias:":
            alias_indent = indent
    return sorted(set(names))


CONF = parse_args(sys.argv[1:])
UNHEALTHY = os.environ.get("STUB_UNHEALTHY") == "1"
STARTED = time.time()
COUNT = {"completions": 0}
COUNT_LOCK = threading.Lock()


def reply_text(model: str) -> str:
    return os.environ.get("STUB_REPLY") or f"stub {model} on {CONF['host']}:{CONF['port']}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "llm-gitops-stub/1"

    def log_message(self, fmt: str, *args: object) -> None:
        sys.stderr.write(f"stub: {self.command} {self.path} {args[1] if len(args) > 1 else ''}\n")

    def send_json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            value = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def route(self) -> str:
        path = self.path.split("?", 1)[0].rstrip("/")
        for tail in ("/health/liveliness", "/health/readiness", "/health", "/v1/models", "/v1/chat/completions", "/v1/completions",
                     "/chat/completions", "/completions", "/models", "/api/version", "/api/tags",
                     "/api/chat", "/api/generate", "/api/show"):
            if path.endswith(tail):
                return tail
        return path

    def do_GET(self) -> None:
        route = self.route()
        health = route in ("/health", "/health/liveliness", "/health/readiness")
        if UNHEALTHY and (health or route in ("/api/version", "/v1/models", "/models")):
            return self.send_json(503, {"error": "unhealthy (STUB_UNHEALTHY=1)"})
        if health:
            return self.send_json(200, {"status": "ok"})
        if self.path.split("?", 1)[0] == "/stub/requests":
            with COUNT_LOCK:
                return self.send_json(200, dict(COUNT))
        if route in ("/v1/models", "/models"):
            return self.send_json(200, {"object": "list", "data": [
                {"id": n, "object": "model", "owned_by": "stub", "created": int(STARTED)} for n in CONF["names"]]})
        if route == "/api/version":
            return self.send_json(200, {"version": "0.0.0-stub"})
        if route == "/api/tags":
            return self.send_json(200, {"models": [{"name": n, "model": n} for n in CONF["names"]]})
        return self.send_json(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:
        route, req = self.route(), self.body()
        if UNHEALTHY:
            return self.send_json(503, {"error": "unhealthy (STUB_UNHEALTHY=1)"})
        model = str(req.get("model") or CONF["names"][0])
        text = reply_text(model)
        if route in ("/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions", "/api/chat",
                     "/api/generate"):
            with COUNT_LOCK:
                COUNT["completions"] += 1
        now = int(time.time())
        usage = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
        if route in ("/v1/chat/completions", "/chat/completions"):
            if req.get("stream"):
                return self.stream(model, text, now)
            return self.send_json(200, {
                "id": f"chatcmpl-stub-{now}", "object": "chat.completion", "created": now, "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}], "usage": usage})
        if route in ("/v1/completions", "/completions"):
            return self.send_json(200, {
                "id": f"cmpl-stub-{now}", "object": "text_completion", "created": now, "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": "stop"}], "usage": usage})
        if route == "/api/chat":
            return self.send_json(200, {
                "model": model, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "message": {"role": "assistant", "content": text}, "done": True, "done_reason": "stop",
                "prompt_eval_count": 3, "eval_count": 5})
        if route == "/api/generate":
            return self.send_json(200, {"model": model, "response": text, "done": True,
                                        "prompt_eval_count": 3, "eval_count": 5})
        if route == "/api/show":
            return self.send_json(200, {"modelfile": "", "parameters": "", "template": "",
                                        "details": {"family": "stub"}, "model_info": {}})
        return self.send_json(404, {"error": f"no route {self.path}"})

    def stream(self, model: str, text: str, now: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for delta, finish in (({"role": "assistant", "content": text}, None), ({}, "stop")):
            chunk = {"id": f"chatcmpl-stub-{now}", "object": "chat.completion.chunk", "created": now,
                     "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    if os.environ.get("STUB_LOG_ENV") == "1":
        for key, value in sorted(os.environ.items()):
            sys.stderr.write(f"stub: env {key}={value}\n")
    exit_after = os.environ.get("STUB_EXIT_AFTER")
    if exit_after is not None:
        delay = float(exit_after)
        if delay <= 0:
            sys.stderr.write("stub: exiting at once (STUB_EXIT_AFTER=0)\n")
            sys.exit(3)
        threading.Timer(delay, lambda: (sys.stderr.write(f"stub: exiting after {delay:g} s (STUB_EXIT_AFTER)\n"),
                                        sys.stderr.flush(), os._exit(3))).start()
    delay = float(os.environ.get("STUB_START_DELAY") or 0)
    if delay > 0:
        sys.stderr.write(f"stub: slow start, listening in {delay:g} s (STUB_START_DELAY)\n")
        time.sleep(delay)
    server = ThreadingHTTPServer((str(CONF["host"]), int(CONF["port"])), Handler)
    server.daemon_threads = True
    sys.stderr.write(f"stub: serving {CONF['names']} on {CONF['host']}:{CONF['port']}\n")
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
