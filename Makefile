# Two commands set up everything on a fresh machine: `make demo` and `make test`.
# Node 24 comes from the npm registry's `node` package into node_modules/.bin,
# which every target puts first on PATH.
SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
NODE := $(CURDIR)/node_modules/.bin/node
CLUSTER_DIR := $(CURDIR)/.cluster
KUBECONFIG_LOCAL := $(CLUSTER_DIR)/kubeconfig

.PHONY: deps binaries typecheck lint format test cluster cluster-down demo run crds bench build images dockerfiles

node_modules/.deps-installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: node_modules/.deps-installed
	@node scripts/check-node.mjs

binaries:
	@bash test/controlplane/build-binaries.sh >/dev/null

typecheck: deps
	npm run -s typecheck

lint: deps
	npm run -s lint

format: deps
	npm run -s format

test: deps binaries
	npx vitest run $(TEST_FLAGS)

cluster: deps binaries
	@if [ -f $(CLUSTER_DIR)/ready ] && kill -0 $$(cat $(CLUSTER_DIR)/pid 2>/dev/null) 2>/dev/null; then \
	  echo "control plane already running: KUBECONFIG=$(KUBECONFIG_LOCAL)"; exit 0; fi; \
	mkdir -p $(CLUSTER_DIR); rm -f $(CLUSTER_DIR)/ready; \
	nohup $(NODE) test/controlplane/cluster-cli.ts $(CLUSTER_DIR) > $(CLUSTER_DIR)/cluster.log 2>&1 & \
	for i in $$(seq 1 300); do \
	  if [ -f $(CLUSTER_DIR)/ready ]; then echo "control plane ready: KUBECONFIG=$(KUBECONFIG_LOCAL)"; exit 0; fi; \
	  if ! kill -0 $$! 2>/dev/null; then echo "control plane failed to start:"; tail -20 $(CLUSTER_DIR)/cluster.log; exit 1; fi; \
	  sleep 1; done; echo "control plane not ready after 300 s; see $(CLUSTER_DIR)/cluster.log"; exit 1

cluster-down:
	@if [ -f $(CLUSTER_DIR)/pid ]; then pid=$$(cat $(CLUSTER_DIR)/pid); kill $$pid 2>/dev/null || true; \
	  for i in $$(seq 1 30); do kill -0 $$pid 2>/dev/null || break; sleep 1; done; fi; \
	rm -f $(CLUSTER_DIR)/pid $(CLUSTER_DIR)/ready; echo "control plane stopped"

demo: deps binaries
	$(NODE) scripts/demo.ts

# The operator against the current KUBECONFIG (e.g. `make cluster` then
# `KUBECONFIG=.cluster/kubeconfig make run`), with the CRD installed first.
run: deps binaries
	PATH=$$(bash test/controlplane/build-binaries.sh):$$PATH kubectl apply --server-side -f crds/nightshift.dev_backgroundtasks.yaml
	$(NODE) operator/main.ts --leader-elect=false $(ARGS)

# The task-runner, operator, pause and testbox images as reproducible OCI
# archives (no Docker, no registry), cached in ~/.cache/nightshift/images.
# IMAGES_FLAGS=--force rebuilds them (to compare digests).
images: deps binaries
	$(NODE) scripts/images/build.ts $(IMAGES_FLAGS)

# The Dockerfiles, rendered from the same image definitions.
dockerfiles: deps
	$(NODE) scripts/images/dockerfile.ts

crds: deps
	$(NODE) crds/generate.ts

# The operator bundled into dist/operator/main.js, as its image holds it (scripts/images/bundle.ts).
build: deps
	rm -rf dist && $(NODE) scripts/images/bundle.ts

# Figures for issue 12's targets, beside a plain client and the Go
# controller-runtime peer (bench/go-peer, built once and cached; BENCH_GO_PEER=0
# skips it): BENCH_TASKS=10000 make bench for the full size.
bench: deps binaries build
	$(NODE) bench/operator.ts
