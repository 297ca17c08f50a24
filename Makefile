# Entry points. `make up` runs the whole system locally; `make test` runs every check CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: audit check-deploy help up down test test-containers test-compose compose-images image test-kafka-3 test-cluster interop vendor-test stack-up stack-down stack-reset lint fmt unit bench bench-smoke fuzz fuzz-smoke

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

up: stack-up ## Start Kafka, the S3 server and the three services in the background; print where to look.
	@scripts/services.sh up
	@scripts/show.sh

audit: ## Prove exactly once for the local run: both consumers' audits of what they wrote (exit 1 on a problem).
	@cargo build --quiet --workspace --all-targets
	@source scripts/local.env && export OUTPUT_FORMATS=json,parquet,iceberg ICEBERG_CATALOG_URI=sqlite:.local/iceberg-catalog.db && \
	  target/debug/sales-consumer audit && target/debug/inventory-consumer audit

down: ## Stop the services, then Kafka and the S3 server (data stays in .local/).
	@scripts/services.sh down
	@scripts/stack.sh down

test: stack-up lint check-deploy vendor-test ## Install and start what the tests need, then run formatting, clippy, the deployment checks and every test.
	cargo test --workspace --all-targets
	$(MAKE) test-kafka-3
	scripts/py.sh pytest tests/interop tests/local
	$(MAKE) test-cluster

test-kafka-3: stack-up ## The consumer group tests again, against Apache Kafka 3.9 on 127.0.0.1:9192 (most MSK clusters run 3.x).
	scripts/stack.sh start kafka-3.9
	STORE_EVENTS_TEST_KAFKA=127.0.0.1:9192 cargo test --workspace --test group
	scripts/stack.sh stop kafka-3.9

test-cluster: stack-up ## Faults and ACLs against a three-broker cluster (scripts/stack.sh cluster up on 127.0.0.1:9301-9303); prints the fault table.
	scripts/stack.sh cluster up
	scripts/py.sh pytest -s tests/cluster
	scripts/stack.sh cluster down

image: ## Build the image (store-events:local) from the Dockerfile; makes the base images from Debian packages where no registry has them.
	@scripts/containers/engine.sh start
	@scripts/containers/base-images.sh
	@scripts/containers/build.sh

compose-images: ## Docker Compose (the plugin, or built from its pinned Go module) and stand-ins for the third-party images docker-compose.yml names, where no registry serves them.
	@scripts/containers/engine.sh start
	@scripts/containers/compose.sh version
	@scripts/containers/stand-ins.sh

test-containers: stack-up image compose-images ## The image as containers (help, HEALTHCHECK, events to S3, SIGTERM to PID 1, audit) and docker-compose.yml end to end. Starts a Docker engine only on CI or with STORE_EVENTS_START_DOCKER=1 (and stops it, unless KEEP_ENGINE=1).
	scripts/py.sh pytest -s tests/containers; status=$$?; [ -n "$(KEEP_ENGINE)" ] || scripts/containers/engine.sh stop; exit $$status

test-compose: image compose-images ## Only docker-compose.yml end to end: up --wait, events to S3 read with the AWS CLI, audit, --scale, a Kafka restart, down -v.
	scripts/py.sh pytest -s tests/containers/test_compose.py; status=$$?; [ -n "$(KEEP_ENGINE)" ] || scripts/containers/engine.sh stop; exit $$status

interop: stack-up ## Only the interoperability tests: what lands in S3, read with the AWS CLI, boto3 and DuckDB.
	scripts/py.sh pytest tests/interop

check-deploy: ## Lint and validate Dockerfile, compose, Kubernetes overlays, alert rules and dashboard (offline).
	@scripts/check-deploy.sh

lint: ## cargo fmt --check (ours, and vendor/rskafka with its own style) and clippy with warnings as errors.
	cargo fmt --all -- --check
	cargo fmt --manifest-path vendor/rskafka/Cargo.toml -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code (vendor/rskafka with its own rustfmt.toml).
	cargo fmt --all
	cargo fmt --manifest-path vendor/rskafka/Cargo.toml

unit: vendor-test ## Every test that needs no running stack: unit tests, and the integration tests that start nothing.
	cargo test --workspace --lib --test schema_agreement --test round_trip --test configuration --test deployment

vendor-test: ## The vendored rskafka's own unit tests, upstream's and our patches' (vendor/rskafka/PATCHES.md).
	CARGO_TARGET_DIR=target/rskafka cargo test --manifest-path vendor/rskafka/Cargo.toml --locked --lib --features full

stack-up: ## Install (first time) and start Apache Kafka and the S3 server on 127.0.0.1.
	@scripts/stack.sh up

stack-down: ## Stop Apache Kafka and the S3 server.
	@scripts/stack.sh down

stack-reset: ## Stop the stack and delete its data.
	@scripts/stack.sh reset

bench: ## Measure the services against Kafka's own perf tools; writes benches/results/latest.md.
	@scripts/bench.sh

bench-smoke: ## The benchmark harness, tiny: checks that every part produces a number (CI).
	@BENCH_PRODUCE_EVENTS=5000 BENCH_BACKLOG_EVENTS=20000 BENCH_HTTP_SECONDS=2 BENCH_LATENCY_SECONDS=8 BENCH_BASELINE_EVENTS=200 BENCH_FAULT_SECONDS=12 BENCH_OUT=.local/bench/smoke scripts/bench.sh

fuzz-smoke: ## The fuzz targets (cargo fuzz, nightly), 60 s each from the kept corpus (CI).
	scripts/fuzz.sh 60

fuzz: ## The fuzz targets for FUZZ_SECONDS (600) each; inputs reaching new code join fuzz/corpus.
	scripts/fuzz.sh $${FUZZ_SECONDS:-600} merge
