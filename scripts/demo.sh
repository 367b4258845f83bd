#!/usr/bin/env bash
# `make demo`: what llm-gitops does, end to end on this machine.
#   Offline, as in a pull request (no Docker):
#   1. validate the bundled GPU-host example (config/example);
#   2. make it a real git repo under .demo/example-repo and commit a change to it
#      (switch the active vLLM on GPU 0 from vllm-qwen to vllm-dolphin);
#   3. print the plan between the two commits, as a reviewer would see it.
#   On the Docker engine (DEMO_OFFLINE=1 stops before this):
#   4. make engine + make images (a local engine and the stub, LiteLLM and Redis images);
#   5. .demo/demo-repo from config/demo, and `llm-gitops apply`: five containers come up;
#   6. a chat completion through the real LiteLLM gateway;
#   7. commit a change, see the live plan, apply it: only the changed provider restarts.
# The stack keeps running afterwards; `make demo-clean` removes it.
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
say "5/7 llm-gitops apply --repo $live --state-dir $state"
if [ -z "${LITELLM_MASTER_KEY:-}" ]; then
    if [ ! -s "$demo/master-key" ]; then
        mkdir -p "$demo" && (umask 077 && python3 -c 'import secrets; print("sk-" + secrets.token_urlsafe(32))' > "$demo/master-key")
    fi
    LITELLM_MASTER_KEY=$(cat "$demo/master-key")
    echo "The gateway's master key is in $demo/master-key (made now, kept between runs)."
fi
export LITELLM_MASTER_KEY
export LLM_GITOPS_NO_GPU_REQUESTS=1   # the demo stack has no GPUs
rm -rf "$live" && mkdir -p "$live"
cp config/demo/*.yaml "$live"/
python3 - "$live" "$stack" "${DEMO_PORT_OFFSET:-0}" <<'PY'
import pathlib, re, sys
repo, stack, offset = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for f in repo.glob("*.yaml"):
    text = re.sub(r"(?m)^name: demo$", f"name: {stack}", f.read_text())
    text = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{int(m.group(1)) + offset}", text)
    f.write_text(text)
PY
gitl() { git -C "$live" -c user.name=llm-gitops-demo -c user.email=demo@localhost "$@"; }
gitl init -q -b main && gitl add -A && gitl commit -q -m "The demo stack: three stub providers, LiteLLM, Redis"
llm-gitops apply --repo "$live" --state-dir "$state"
llm-gitops status --state-dir "$state"

gateway=$(python3 -c 'import re,sys; print(re.search(r"base_url: (\S+)", open(sys.argv[1]).read().split("gateway:")[1]).group(1))' "$live/stack.yaml")
say "6/7 a chat completion through the gateway at $gateway"
ask='{"model": "qwen-tiny", "messages": [{"role": "user", "content": "Hello"}]}'
echo "curl $gateway/v1/chat/completions -H \"Authorization: Bearer \$LITELLM_MASTER_KEY\" -d '$ask'"
curl -sS --noproxy '*' --fail-with-body "$gateway/v1/chat/completions" -H "Authorization: Bearer $LITELLM_MASTER_KEY" \
    -H 'Content-Type: application/json' -d "$ask" \
  | python3 -c 'import json,sys; r=json.load(sys.stdin); print("answer:", r["choices"][0]["message"]["content"])'

say "7/7 commit a change (vllm-tiny gets --seed 1), plan it live, apply it"
python3 - "$live/providers.yaml" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read().replace('--max-model-len, "2048"]', '--max-model-len, "2048", --seed, "1"]', 1)
open(path, "w").write(text)
PY
gitl commit -q -am "vllm-tiny: fixed seed"
llm-gitops plan --live --repo "$live" --state-dir "$state"
llm-gitops apply --repo "$live" --state-dir "$state"
llm-gitops history --state-dir "$state"

echo
echo "The stack keeps running: gateway $gateway, master key in \$LITELLM_MASTER_KEY or $demo/master-key."
echo "Change $live/*.yaml, commit, and run:  .venv/bin/llm-gitops apply --repo $live --state-dir $state"
echo "See what runs:                         .venv/bin/llm-gitops status --state-dir $state"
echo "Stop and remove it:                    make demo-clean"
