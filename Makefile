# Shipyard — `make help` lists the targets. `make run` and `make test` work on a fresh machine:
# they create .venv and install the pinned dependencies themselves.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.DEFAULT_GOAL := help

help: ## Show this help
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Shipyard needs Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==26.3"
	$(BIN)/pip install --quiet -c requirements.lock -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv and install pinned dependencies

run: $(STAMP) ## The main job: data -> Feast -> KFP training pipeline (kfp.local) -> registry, no cluster
	$(BIN)/shipyard run

test: $(STAMP) test-tools ## Run unit, integration, S3 and k8s tests (installs/builds what they need first)
	$(BIN)/pytest

# What the test tiers need beyond Python: Debian's redis-server (installed when missing and we are
# root), and the Go-built k8s/S3 tools (cached by version; the first build takes minutes). Where a
# tool cannot be had, this says so and the tests that need it skip with the reason (fail under CI).
test-tools:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing redis-server (Debian) for the Redis online-store tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else echo "note: redis-server missing and not root: the Redis tests will skip (apt-get install redis-server)"; fi; }
	@if command -v go >/dev/null || [ -x /usr/local/go/bin/go ]; then bash hack/k8s-tools/build.sh; \
	  else echo "note: Go not found: the k8s and S3 tests will skip (see make k8s-tools)"; fi
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then $(MAKE) --no-print-directory image-tools image; \
	  else echo "note: not root: the image tests will skip (make image-tools image as root)"; fi

lint: $(STAMP) ## ruff + mypy + import contracts (the platform never imports a project; the CLI composes)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shipyard components pipelines serving ticket_routing benchmarks tests
	$(BIN)/lint-imports
	bash hack/ci/actionlint.sh

format: $(STAMP) ## Apply ruff formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

compile: $(STAMP) ## Compile pipelines to their committed YAML
	$(BIN)/shipyard compile

schema: $(STAMP) ## Regenerate the settings JSON schema the package ships, and the chart's copies of it
	$(BIN)/shipyard settings schema > shipyard/settings.schema.json
	$(BIN)/python charts/shipyard/hack/sync_settings.py

k8s-tools: ## Build kube-apiserver, controller-manager, scheduler, kubectl, etcd, helm, kwok, the KServe controller, MinIO into .tools/ (cached by version)
	bash hack/k8s-tools/build.sh

lock: ## Regenerate requirements.lock from a fresh resolve of pyproject.toml
	rm -rf /tmp/shipyard-lock && $(PYTHON) -m venv /tmp/shipyard-lock
	/tmp/shipyard-lock/bin/pip install --quiet ".[dev]"
	(echo "# Constraints for the whole dependency closure (make lock regenerates it from a fresh venv)."; \
	 /tmp/shipyard-lock/bin/pip freeze --exclude shipyard) > requirements.lock

clean: ## Remove generated data, local runs, registries and caches (keeps .venv and .tools)
	rm -rf .shipyard local_outputs feature_repo/data .pytest_cache .mypy_cache .ruff_cache

.PHONY: help venv run test test-tools lint format compile schema k8s-tools lock clean

# -- serving ------------------------------------------------------------------------------------
PORT ?= 8080
BENCH_SECONDS ?= 10
BENCH_BASELINE ?= # a git commit: also measure its serving/ (e.g. BENCH_BASELINE=c330360, before issue 12)

serve: $(STAMP) ## Serve the champion from `make run` on :8080 or PORT= (KServe V1 + V2 REST, /metrics)
	@if $(BIN)/shipyard models list --json | grep -q '"champion": null'; then \
	  echo "no champion model yet: running 'shipyard run' first"; $(BIN)/shipyard run; fi
	$(BIN)/shipyard serve --port $(PORT)

bench-tools: ## Install wrk and redis-server from Debian when missing (the benchmark's load generator and store)
	@command -v wrk >/dev/null && command -v redis-server >/dev/null || { \
	  [ "$$(id -u)" = 0 ] || { echo "error: bench needs wrk and redis-server: sudo apt-get install wrk redis-server"; exit 1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk redis-server >/dev/null; }

# The benchmark's MLServer peer lives in its own pinned virtualenv: its dependencies never touch .venv
# (kfp pins certifi, protobuf ... differently). Rebuilt when its requirements file changes.
BENCH_VENV := .tools/bench-venv/mlserver
BENCH_STAMP := $(BENCH_VENV)/.installed
$(BENCH_STAMP): benchmarks/peers/mlserver-requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (the MLServer peer needs Python 3.11)"; exit 1; }
	rm -rf $(BENCH_VENV) && $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade "pip==26.3"
	$(BENCH_VENV)/bin/pip install --quiet -r benchmarks/peers/mlserver-requirements.txt
	@touch $(BENCH_STAMP)

bench-peers: $(BENCH_STAMP) ## Build the benchmark's peers: MLServer 1.7.1 + mlserver-sklearn in .tools/bench-venv/mlserver

bench: $(STAMP) bench-tools bench-peers ## Serving vs MLServer and a hand-written KServe model (wrk), + training-pipeline overhead
	$(BIN)/python -m benchmarks.serving_latency --seconds $(BENCH_SECONDS) $(if $(BENCH_BASELINE),--baseline $(BENCH_BASELINE))
	$(BIN)/python benchmarks/training_overhead.py

.PHONY: serve bench bench-tools bench-peers

# Training at scale (docs/scale.md): data -> Feast -> the kfp.local pipeline at each size, wall time,
# CPU time and peak RSS per step, in scratch directories removed afterwards; a watchdog kills a run
# whose process tree passes BENCH_TRAIN_MAX_GIB. Needs ~3 GiB free at 1M tickets and ~5 minutes.
BENCH_TRAIN_SIZES ?= 20000,200000,1000000
BENCH_TRAIN_MAX_GIB ?= 10
bench-train: $(STAMP) ## Training at scale: wall/CPU time and peak RSS per step at 20k/200k/1M tickets (BENCH_TRAIN_SIZES=)
	$(BIN)/python benchmarks/training_scale.py --sizes $(BENCH_TRAIN_SIZES) --max-rss-gib $(BENCH_TRAIN_MAX_GIB)

.PHONY: bench-train

# -- image --------------------------------------------------------------------------------------
# The component and model-server image (docs/image.md), tagged components/images.py's
# COMPONENT_IMAGE: docker where its daemon answers, else buildah on a Debian root that mmdebstrap
# makes from the same Debian packages. Stamped in .tools/image/: with nothing changed it takes seconds.
image-tools: ## Install Debian's buildah, podman, skopeo, runc, mmdebstrap, uidmap (as root) and build crane into .tools/bin
	bash hack/image/build.sh tools

image: $(STAMP) ## Build the component/model-server image (docker if its daemon runs, else buildah; cached)
	bash hack/image/build.sh image

test-image: $(STAMP) ## Run the image tests (tests/image: after `make image-tools image`)
	$(BIN)/pytest tests/image

# CI's staging workflow pushes the image tagged by the commit; crane is .tools/bin/crane (make image-tools).
# Registry login (crane auth login) when REGISTRY_USERNAME/REGISTRY_PASSWORD are set; hack/image/push.sh.
IMAGE_REPO ?= $(shell $(BIN)/python -c 'from components.images import IMAGE_REPOSITORY; print(IMAGE_REPOSITORY)')
GIT_SHA ?= $(shell git rev-parse HEAD)
image-push: image ## Push the built image to $(IMAGE_REPO):$(GIT_SHA) with crane and print its digest
	IMAGE_REPO='$(IMAGE_REPO)' GIT_SHA='$(GIT_SHA)' bash hack/image/push.sh

.PHONY: image image-tools test-image image-push

# -- monitoring and continuous training -----------------------------------------------------------
# The reference project's history with covariate and concept drift from March 1st (its generator's
# knobs), a champion trained on January, February served as is and March-April drifted: monitoring
# asks to retrain, continuous training registers a candidate trained on the drifted two months.
demo-drift: $(STAMP) ## Drift -> monitoring -> retrain -> a gated candidate, locally in .shipyard/demo-drift (~3 min)
	$(BIN)/shipyard demo drift --train-end 2025-01-31 --drift-from 2025-03-01 --until 2025-04-30 \
	  --retrain-window-days 61 --set start=2025-01-01 --set end=2025-04-30 --set customers=2000 \
	  --set tickets=16000 --set covariate_drift_from=2025-03-01 --set concept_drift_from=2025-03-01

.PHONY: demo-drift

# -- promotion ----------------------------------------------------------------------------------
promote-demo: $(STAMP) ## The promotion PR flow rehearsed on a local control plane (KServe, kwok, MinIO): propose -> merge -> apply -> validate -> canary (~4 min)
	@bash hack/k8s-tools/build.sh >/dev/null
	$(BIN)/pytest tests/k8s/test_release.py -k rehearsal -s -q -p no:cacheprovider

release-check: $(STAMP) ## Validate every release record offline (schema, pipeline at the commit, evidence hashes)
	$(BIN)/shipyard release check --offline

.PHONY: promote-demo release-check
