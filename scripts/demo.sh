#!/usr/bin/env bash
# `make demo`: what llm-gitops does today, end to end on this machine, without Docker.
#   1. validate the bundled GPU-host example (config/example);
#   2. make it a real git repo under .demo/example-repo and commit a change to it
#      (switch the active vLLM on GPU 0 from vllm-qwen to vllm-dolphin);
#   3. print the plan between the two commits, as a reviewer would see it in a pull request.
# The container runtime (apply, rollback, the loop) is not built yet; see the README.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=${DEMO_DIR:-.demo}   # tests point it elsewhere
repo=$demo/example-repo
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1/3 llm-gitops validate config/example"
llm-gitops validate config/example

say "2/3 a spec repo with two commits in $repo"
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

say "3/3 llm-gitops plan --repo $repo --base HEAD~1 --head HEAD"
set +e
llm-gitops plan --repo "$repo" --base HEAD~1 --head HEAD --detailed-exitcode
code=$?
set -e
llm-gitops plan --repo "$repo" --base HEAD~1 --head HEAD --format markdown > "$demo/plan.md"
echo
echo "exit code $code (0 no changes, 2 changes, 1 error)."
echo "The same plan as a pull-request comment, with a Mermaid graph of the routing: $demo/plan.md"
echo "Try your own change: edit $repo/*.yaml, commit, and run"
echo "  .venv/bin/llm-gitops plan --repo $repo --base HEAD~1 --head HEAD"
[ "$code" -eq 2 ]
