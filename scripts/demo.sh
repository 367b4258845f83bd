#!/usr/bin/env bash
# `make demo`: what llm-gitops does, end to end on this machine.
#   Offline, as in a pull request (no Docker):
#   1. validate the bundled GPU-host example (config/example);
#   2. make it a real git repo under .demo/example-repo and commit a change to it
#      (switch the active vLLM on GPU 0 from vllm-qwen to vllm-dolphin);
#   3. print the plan between the two commits, as a reviewer would see it.
#   On the Docker engine (DEMO_OFFLINE=1 stops before this):
#   4. make engine + make images (a local engine and the stub, LiteLLM and Redis images);
#   5. .demo/demo-repo from config/demo (a real git repo to commit to), and the controller,
#      `llm-gitops run`, in the foreground: five containers come up, health-gated;
#   6. a chat completion through the real LiteLLM gateway;
#   7. a commit: the controller sees it and converges (only the changed provider restarts).
# Then the controller keeps running in the foreground until Ctrl-C; when stdin is not a
# terminal (CI, tests) it is stopped with SIGTERM instead. The stack keeps running
# afterwards; `make demo-clean` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=${DEMO_DIR:-.demo}   # tests point it elsewhere
repo=$demo/example-repo
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1/7 llm-gitops validate config/example"
llm-gitops validate config/example

say "2/7 a spec repo with two commits in $repo"
rm -rf "$repo" && mkdir -p "$repo"   # a fresh repository on every run
cp config/example/*.yaml "$repo"/
git_() { git -C "$repo" -c user.name=llm-gitops-demo -c user.email=demo@localhost "$@"; }
git_ init -q -b main
git_ add -A && git_ commit -q -m "GPU host: vllm-qwen on GPU 0"
python3 - "$repo/providers.yaml" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
# swap the status of the two vLLM providers that share GPU 0
text = re.sub(r"(  vllm-qwen:\n(?:    .*\n)*?    status: )active", r"\1disabled", text, count=1)
text = re.sub(r"(  vllm-dolphin:\n(?:    .*\n)*?    status: )disabled", r"\1active", text, count=1)
open(path, "w").write(text)
PY
git_ commit -q -am "Switch GPU 0 to vllm-dolphin"
git_ log --oneline

say "3/7 llm-gitops plan --repo $repo --base HEAD~1 --head HEAD"
set +e
llm-gitops plan --repo "$repo" --base HEAD~1 --head HEAD --detailed-exitcode
code=$?
set -e
llm-gitops plan --repo "$repo" --base HEAD~1 --head HEAD --format markdown > "$demo/plan.md"
echo
echo "exit code $code (0 no changes, 2 changes, 1 error)."
echo "The same plan as a pull-request comment, with a Mermaid graph of the routing: $demo/plan.md"
[ "$code" -eq 2 ]
[ -n "${DEMO_OFFLINE:-}" ] && exit 0

say "4/7 make engine images (a Docker engine and the local images; nothing is pulled)"
bash scripts/engine.sh
bash scripts/images.sh

live=$demo/demo-repo
state=$demo/state
stack=${DEMO_STACK:-demo}   # tests run the demo under another name and other ports
offset=${DEMO_PORT_OFFSET:-0}
http_port=$((8790 + offset))
say "5/7 the demo repo $live, and the controller: llm-gitops run"
if [ -z "${LITELLM_MASTER_KEY:-}" ]; then
    if [ ! -s "$demo/master-key" ]; then
        mkdir -p "$demo" && (umask 077 && python3 -c 'import secrets; print("sk-" + secrets.token_urlsafe(32))' > "$demo/master-key")
        echo "LITELLM_MASTER_KEY is unset, so a master key was made for the gateway: $demo/master-key (0600, kept between runs)."
    else
        echo "LITELLM_MASTER_KEY is unset: the gateway uses the master key kept in $demo/master-key."
    fi
    LITELLM_MASTER_KEY=$(cat "$demo/master-key")
else
    echo "The gateway's master key is your \$LITELLM_MASTER_KEY."
fi
export LITELLM_MASTER_KEY
export LLM_GITOPS_NO_GPU_REQUESTS=1   # the demo stack has no GPUs

# The gateway image: the official LiteLLM image of the pinned version when this host has it,
# else the one `make images` built from the same release.
version=$(sed -n 's/.*"litellm==\([0-9.]*\)".*/\1/p' pyproject.toml)
gateway_image=${DEMO_GATEWAY_IMAGE:-}
if [ -z "$gateway_image" ]; then
    for candidate in "ghcr.io/berriai/litellm:main-v$version" "ghcr.io/berriai/litellm:v$version-stable" \
                     "ghcr.io/berriai/litellm:v$version" "docker.litellm.ai/berriai/litellm:main-v$version" \
                     "litellm/litellm:v$version"; do
        if docker image inspect "$candidate" >/dev/null 2>&1; then gateway_image=$candidate; break; fi
    done
fi
if [ -n "$gateway_image" ]; then
    echo "Gateway image: $gateway_image (found on this host)."
else
    gateway_image="llm-gitops-test/litellm:$version"
    echo "Gateway image: $gateway_image, built locally (this host has no official image of LiteLLM $version;"
    echo "  after \`docker pull ghcr.io/berriai/litellm:main-v$version\` the demo uses that one)."
fi

rm -rf "$live" && mkdir -p "$live"
cp config/demo/*.yaml "$live"/
python3 - "$live" "$stack" "$offset" "$gateway_image" <<'PY'
import pathlib, re, sys
repo, stack, offset, image = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
for f in repo.glob("*.yaml"):
    text = re.sub(r"(?m)^name: demo$", f"name: {stack}", f.read_text())
    text = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{int(m.group(1)) + offset}", text)
    if f.name == "stack.yaml" and not image.startswith("llm-gitops-test/"):
        text = re.sub(r"(?m)^  image: llm-gitops-test/litellm:\S+$", f"  image: {image}", text)
        allowed = image.rsplit(":", 1)[0]
        text = re.sub(r"(?m)^  allowed_images: \[llm-gitops-test/\]", f"  allowed_images: [llm-gitops-test/, {allowed}]", text)
    f.write_text(text)
PY
gitl() { git -C "$live" -c user.name=llm-gitops-demo -c user.email=demo@localhost "$@"; }
gitl init -q -b main && gitl add -A && gitl commit -q -m "The demo stack: three stub providers, LiteLLM, Redis"
first=$(gitl rev-parse HEAD)
gateway=$(python3 -c 'import re,sys; print(re.search(r"base_url: (\S+)", open(sys.argv[1]).read().split("gateway:")[1]).group(1))' "$live/stack.yaml")

echo "llm-gitops run --repo $live --state-dir $state --http-port $http_port"
echo "(its log follows: one line per step, each with the commit it belongs to)"
llm-gitops run --repo "$live" --state-dir "$state" --http-port "$http_port" --log-format console \
    --drift-interval-s 30 &
controller=$!
stop_controller() {
    if kill -0 "$controller" 2>/dev/null; then
        kill -TERM "$controller" 2>/dev/null || true
        wait "$controller" 2>/dev/null || true
    fi
}
trap 'stop_controller; echo; echo "Controller stopped. The stack keeps running; make demo-clean removes it."; exit 0' INT TERM
trap 'stop_controller' EXIT

# Wait until the controller has finished a pass on commit $1: 0 when applied, else say why.
wait_applied() {
    python3 - "$state" "$1" "${2:-300}" "$controller" <<'PY'
import json, os, pathlib, signal, sys, time
signal.signal(signal.SIGINT, lambda *_: sys.exit(130))  # Ctrl-C: the caller says what happened
state, commit, limit, pid = pathlib.Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("the controller exited; its log above says why")
    try:
        lines = (state / "history.jsonl").read_text().splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("commit") == commit and e.get("outcome") not in (None, "interrupted"):
            sys.exit(0 if e["outcome"] == "applied" else f"the controller did not apply {commit[:12]}: {e['message']}")
    time.sleep(0.5)
sys.exit(f"the controller did not finish {commit[:12]} within {limit:.0f} s")
PY
}
interrupted() {
    stop_controller
    echo
    echo "Controller stopped before the demo finished. What runs stays; \`make demo\` again picks up from there,"
    echo "and make demo-clean removes it."
    exit 0
}
wait_applied "$first" || { [ $? -eq 130 ] && interrupted; exit 1; }

ask='{"model": "qwen-tiny", "messages": [{"role": "user", "content": "Hello"}]}'
say "6/7 a chat completion through the gateway at $gateway"
echo "curl $gateway/v1/chat/completions -H \"Authorization: Bearer \$LITELLM_MASTER_KEY\" -H 'Content-Type: application/json' -d '$ask'"
curl -sS --noproxy '*' --fail-with-body "$gateway/v1/chat/completions" -H "Authorization: Bearer $LITELLM_MASTER_KEY" \
    -H 'Content-Type: application/json' -d "$ask" \
  | python3 -c 'import json,sys; r=json.load(sys.stdin); print("answer:", r["choices"][0]["message"]["content"])'

say "7/7 commit a change (vllm-tiny gets --seed 1); the controller sees it and converges"
python3 - "$live/providers.yaml" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read().replace('--max-model-len, "2048"]', '--max-model-len, "2048", --seed, "1"]', 1)
open(path, "w").write(text)
PY
echo "git -C $live commit -am 'vllm-tiny: fixed seed'"
gitl commit -q -am "vllm-tiny: fixed seed"
wait_applied "$(gitl rev-parse HEAD)" || { [ $? -eq 130 ] && interrupted; exit 1; }
llm-gitops history --state-dir "$state"

cat <<EOF

== The stack runs, and the controller keeps it so.
  Gateway     $gateway  (the OpenAI API; models qwen-tiny, tinyllama:1.1b, phi-mini, ...)
  Master key  export LITELLM_MASTER_KEY=\$(cat $demo/master-key)   (or your own \$LITELLM_MASTER_KEY)
  Ask it      curl $gateway/v1/chat/completions -H "Authorization: Bearer \$LITELLM_MASTER_KEY" \\
                -H 'Content-Type: application/json' -d '$ask'
  Change it   edit $live/providers.yaml or model-mappings.yaml, then
                git -C $live commit -am "my change"
              and watch the controller's log converge (or roll back) within seconds
  Look        .venv/bin/llm-gitops status --state-dir $state     curl -s 127.0.0.1:$http_port/status
  Stop        Ctrl-C stops the controller (the stack keeps running); make demo-clean removes the stack
  Restart     export LITELLM_MASTER_KEY=\$(cat $demo/master-key)
              .venv/bin/llm-gitops run --repo $live --state-dir $state --http-port $http_port
EOF

if [ -t 0 ] && [ -z "${DEMO_SCRIPTED:-}" ]; then
    echo
    echo "The controller keeps running in the foreground; Ctrl-C stops it."
    # Ctrl-C reaches the controller too; it stops at a safe point and exits 0, and then bash
    # goes on here (it runs no INT trap for a child that handled the signal itself).
    wait "$controller" || true
    echo
    echo "Controller stopped. The stack keeps running; make demo-clean removes it."
else
    echo
    echo "(stdin is not a terminal: the controller is stopped now, as Ctrl-C would)"
    stop_controller
    echo "Controller stopped. The stack keeps running; make demo-clean removes it."
fi
