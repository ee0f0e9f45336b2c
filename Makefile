# calanque's single entry points. CI (.ci/run) calls `make test`, the command the README names.
SHELL := /bin/bash
CARGO ?= cargo
# Where the shared corpora live (RFC 4475, PROTOS c07-sip, PJSIP seeds); read at run time.
export CALANQUE_TESTDATA ?= $(abspath ../shared/testdata)

.PHONY: help deps run test test-unit test-observability test-chart lint lint-ci fmt deny sans-io bench bench-directory bench-register bench-calls bench-media fuzz e2e-ha e2e-clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

deps: ## Install what the tests need (apt/pip), only when missing
	@scripts/ensure-deps.sh

test: deps sans-io lint-ci test-observability test-chart test-unit ## Everything CI runs: lints, sans-IO check, rules and dashboards, the Helm chart, all tests

test-chart: ## Helm chart: lint, render (default and example values), validate every object and the CRD offline
	@scripts/check-chart.sh

test-observability: ## Prometheus rules (promtool check + unit tests) and dashboards against docs/metrics.md
	@scripts/check-observability.sh

test-unit: ## Unit and corpus tests of every crate (no network, no servers)
	@mkdir -p target
	set -o pipefail; $(CARGO) test --workspace --locked 2>&1 | tee target/test-unit.log
	@scripts/test-summary.py target/test-unit.log

sans-io: ## Fail if the protocol cores depend on an async runtime
	@scripts/check-sans-io.sh

lint-ci: ## Formatting and clippy (what CI enforces)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

lint: lint-ci deny ## lint-ci plus cargo-deny (licenses, advisories offline, bans)

deny: ## cargo-deny (installed from crates.io when missing)
	@command -v cargo-deny >/dev/null || $(CARGO) install cargo-deny --locked
	$(CARGO) deny check bans licenses sources

fmt: ## Format the tree
	$(CARGO) fmt --all

run: deps ## Start calanque all-in-one (SIP on 0.0.0.0:5060 UDP/TCP, data in ./data, a demo directory); RUN_ARGS for more flags
	cargo run --release --locked -p calanque -- run $(RUN_ARGS)

bench: deps ## Micro-benchmarks, the directory bench, registrations/s and call setups/s vs Kamailio, the media relay (BENCHMARKS.md)
	@scripts/bench.sh
	@scripts/bench-directory.sh
	@scripts/bench-register.sh
	@scripts/bench-calls.sh
	@scripts/bench-media.sh

bench-calls: deps ## Call setups/s (INVITE…BYE, no media), calanque all-in-one and cluster vs Kamailio as a proxy
	@scripts/bench-calls.sh

bench-media: ## Media relay on one core: packets/s and CPU per packet, added one-way latency idle and under 100/500 calls (RUNS=3 repeats)
	@scripts/bench-media.sh

bench-register: deps ## Authenticated registrations/s, calanque's edge vs Kamailio (SIPp, etcd-backed location)
	@scripts/bench-register.sh

bench-directory: deps ## Directory: city import through the CLI, bus lookups under load (real etcd + NATS)
	@scripts/bench-directory.sh

fuzz: ## Run the parser fuzz targets for FUZZ_SECONDS each (default 60; see docs/fuzzing.md)
	@scripts/fuzz.sh $${FUZZ_SECONDS:-60}

e2e-ha: deps ## Every two-datacenter failure scenario under a phone fleet (network namespaces, real etcd/NATS clusters); writes e2e/REPORT.md (about 8 min)
	$(CARGO) build --workspace --bins --locked
	./target/debug/cq-e2e-ha --report e2e/REPORT.md --machine "$$(nproc) cores, $$(uname -sr)"

e2e-clean: ## Remove what a crashed e2e run left: processes in cq-* network namespaces, the namespaces
	@for ns in $$(ip netns list 2>/dev/null | awk '$$1 ~ /^cq-/ {print $$1}'); do \
	  pids=$$(ip netns pids $$ns); [ -z "$$pids" ] || kill -9 $$pids 2>/dev/null || true; \
	  ip netns del $$ns && echo "removed $$ns"; \
	done
