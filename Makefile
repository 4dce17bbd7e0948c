# Everyday checks for developers. `make check` is fast and starts nothing: no Slurm, no
# dockerd, no trainer runs (the tests that need them skip without their environment).
# It leaves the linters to `make lint` (golangci-lint on the Go, ruff on the Python):
# they need tools of their own, and golangci-lint's first run takes about a minute.
# The whole suite, with the real cluster, container engine and trainer, is
# scripts/test.sh (what CI runs), both linters included.

GO ?= go
PYTHON ?= $(shell scripts/setup-python.sh 2>/dev/null | tail -n 1)
# The version scripts/test.sh pins (a newer one brings new findings).
GOLANGCI_VERSION := 2.15.0
GOLANGCI_LINT ?= $(shell $(GO) env GOPATH)/bin/golangci-lint

.PHONY: check fmt vet lint lint-go test-go test-python build test

check: fmt vet test-go

build:
	$(GO) build -buildvcs=auto -o bin/loractl ./cmd/loractl

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Lint: golangci-lint on the Go (.golangci.yml; installed into $(go env GOPATH)/bin when
# missing) and ruff on the Python (ruff.toml; it comes with LORACTL_DEV_EXTRAS=1
# scripts/setup-python.sh). `make lint-go` is the Go half alone.
lint: lint-go
	$(dir $(PYTHON))ruff check python bench

lint-go:
	@$(GOLANGCI_LINT) version 2>/dev/null | grep -qF "version $(GOLANGCI_VERSION) " || \
		$(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v$(GOLANGCI_VERSION)
	$(GOLANGCI_LINT) run ./...

# Unit tests: the end-to-end package is left out (it trains real models).
test-go:
	$(GO) test $$($(GO) list ./... | grep -v /test/e2e)

test-python:
	$(PYTHON) -m pytest -q python/tests

test:
	bash scripts/test.sh
