# Agent Data Platform. The two commands: `make run` and `make test`.
GO       ?= go
BINARIES := dispatcher sandbox-runtime web-runtime adpctl
TASKS    ?= tasks.jsonl
OUTPUT   ?= output

.PHONY: all build run up test test-go test-scripts test-chaos test-compose bench vet fmt clean clean-output bootstrap

all: build

build:
	@mkdir -p bin
	@for b in $(BINARIES); do \
		CGO_ENABLED=0 $(GO) build -trimpath -o bin/$$b ./cmd/$$b || exit 1; \
	done

# The main job without Docker: install what is missing, build, run the whole
# pipeline on $(TASKS) until every task has a result, print a summary.
run:
	@scripts/bootstrap.sh --run
	@$(MAKE) --no-print-directory build
	bin/adpctl up --tasks $(TASKS) --output $(OUTPUT)

# `make run` that stays up: Redis on 127.0.0.1:6379, both runtimes, the demo
# site and the dispatcher following $(TASKS), until Ctrl-C. The runbook in
# docs/operations.md runs against it.
up:
	@scripts/bootstrap.sh --run
	@$(MAKE) --no-print-directory build
	bin/adpctl up --keep --tasks $(TASKS) --output $(OUTPUT)

# The README's test command: installs what tests need, then every Go test
# with the race detector, the end-to-end scripts in local mode, and the
# fault-injection suite.
test:
	@scripts/bootstrap.sh --test
	@$(MAKE) --no-print-directory test-go test-scripts test-chaos

# -short skips the fault-injection suite here; test-chaos runs it.
test-go:
	$(GO) vet ./...
	$(GO) test -race -short -count=1 -timeout 45m ./...

test-chaos: build
	$(GO) test -race -count=1 -timeout 40m ./internal/chaos/

test-scripts: build
	scripts/smoke_test.sh --local
	scripts/integration_test.sh --local

# The stack on a container engine (not part of `make test`: it needs one):
# builds the images, runs them, scales, kills and resumes; see
# scripts/compose_test.sh. Honours DOCKER_HOST; BuildKit not needed.
test-compose: build
	scripts/compose_test.sh

bench: build
	scripts/bench.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin

# Forget a local run's state: Redis data (dedup, streams), trajectories, logs.
clean-output:
	rm -rf $(OUTPUT)
