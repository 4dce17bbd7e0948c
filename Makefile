# Everyday checks for developers. `make check` is fast and starts nothing: no Slurm, no
# dockerd, no trainer runs (the tests that need them skip without their environment).
# The whole suite, with the real cluster, container engine and trainer, is
# scripts/test.sh (what CI runs).

GO ?= go
PYTHON ?= $(shell scripts/setup-python.sh 2>/dev/null | tail -n 1)

.PHONY: check fmt vet lint test-go test-python build test

check: fmt vet test-go

build:
	$(GO) build -buildvcs=auto -o bin/loractl ./cmd/loractl

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Python lint (ruff.toml); the linter comes with LORACTL_DEV_EXTRAS=1 scripts/setup-python.sh.
lint:
	$(dir $(PYTHON))ruff check python bench

# Unit tests: the end-to-end package is left out (it trains real models).
test-go:
	$(GO) test $$($(GO) list ./... | grep -v /test/e2e)

test-python:
	$(PYTHON) -m pytest -q python/tests

test:
	bash scripts/test.sh
