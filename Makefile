# Agent Data Platform. `make run` and `make test` are the two commands.
GO       ?= go
BINARIES := dispatcher sandbox-runtime web-runtime adpctl
GOFLAGS  ?= -trimpath

.PHONY: all build test test-short bench run vet fmt clean bootstrap

all: build

build:
	@mkdir -p bin
	@for b in $(BINARIES); do \
		if [ -d cmd/$$b ]; then CGO_ENABLED=0 $(GO) build $(GOFLAGS) -o bin/$$b ./cmd/$$b || exit 1; fi; \
	done

bootstrap:
	scripts/bootstrap.sh --test

# The README's test command: installs what tests need, then runs every test
# with the race detector.
test: bootstrap
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 40m ./...

bench: build
	scripts/bench.sh

run: build
	scripts/run.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
