# llm-gitops: every target sets up what it needs (a virtualenv in .venv with the package
# installed in editable mode), so `make test` and `make demo` work on a fresh machine.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: help venv engine images test demo demo-clean bench schema litellm-keys clean

help:
	@echo "make test          engine, images, install into $(VENV), and run the whole test suite"
	@echo "make engine        make a Docker engine reachable (installs and starts one as root on Debian)"
	@echo "make images        build the local test/demo images (stub, litellm, redis); skips those that exist"
	@echo "make demo          plan a change offline, then run config/demo on Docker with the real LiteLLM gateway"
	@echo "make demo-clean    remove the demo's containers (by their llm-gitops labels) and .demo/"
	@echo "make bench         every benchmark (the pure core; vs docker-compose; the controller): .bench/report.md"
	@echo "make schema        regenerate schema/*.schema.json (editor schemas)"
	@echo "make litellm-keys  regenerate controller/spec/litellm_keys.py from the pinned LiteLLM"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

engine:
	@bash scripts/engine.sh

images: engine
	@bash scripts/images.sh

# Without an engine (a laptop without Docker) the real-engine tests skip; under CI=true
# (.ci/run) that is a failure, here and in the tests themselves.
test: $(STAMP)
	@bash scripts/engine.sh && bash scripts/images.sh || { \
	  if [ -n "$$CI" ]; then echo "make test: CI needs the engine and images" >&2; exit 1; fi; \
	  echo "make test: no engine or images; the real-engine tests will be skipped" >&2; }
	LITELLM_LOCAL_MODEL_COST_MAP=True $(PY) -m pytest

demo: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo.sh

# Only containers llm-gitops made for the demo stack: our labels, removed by id.
demo-clean:
	@ids=$$( (docker ps -aq --filter label=llm-gitops.managed-by=llm-gitops --filter label=llm-gitops.stack=$${DEMO_STACK:-demo}; \
	          docker ps -aq --filter label=llm-gitops.state-dir=$(abspath .demo)/state) 2>/dev/null | sort -u); \
	  if [ -n "$$ids" ]; then docker rm -f $$ids >/dev/null && echo "removed the demo's containers"; fi
	rm -rf .demo

# The bench needs the package and matplotlib (the plot), not the test tools; the engine, the
# stub image and Debian's docker-compose 1.29.2 (installed as root on Debian when missing).
$(BENCH_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	@bash scripts/engine.sh && bash scripts/images.sh stub && bash scripts/compose.sh
	$(PY) scripts/bench.py

schema: $(STAMP)
	$(VENV)/bin/llm-gitops schema --out schema

litellm-keys: $(STAMP)
	$(PY) scripts/gen_litellm_keys.py > controller/spec/litellm_keys.py

clean:
	rm -rf $(VENV) .demo .bench .pytest_cache .hypothesis build *.egg-info
