# botq's Makefile. `make` alone lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

GO             ?= go
BIN            := bin/botq
VERSION        ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS        := -X main.version=$(VERSION) -X github.com/botq/botq/botapi.Version=$(VERSION)
STATICCHECK    := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOCYCLO        := github.com/fzipp/gocyclo/cmd/gocyclo@v0.6.0
# The OpenAPI validators, run with npx from npm's registry (pinned).
REDOCLY        := @redocly/cli@2.77.0
SWAGGER_CLI    := @apidevtools/swagger-cli@4.0.4
export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable
# Fuzz targets run briefly by `make test`; `make fuzz FUZZTIME=5m` runs them longer. The default
# is a count of inputs, not a duration: a duration races Go's fuzzing coordinator on a busy machine
# ("context deadline exceeded" with no failing input).
FUZZTIME       ?= 5000x
# `make test/soak` runs this long, and keeps its samples, heap profiles and plots here.
SOAK           ?= 2h
SOAK_OUT       ?= soak-out

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9/_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

.PHONY: build
build: ## Build bin/botq
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/botq

.PHONY: run
run: build ## Run botq locally: Postgres (found or started), the simulator, botq, sample actions (botq dev)
	./$(BIN) dev

.PHONY: migrate
migrate: build ## Migrate the schema of DATABASE_URL (botq migrate up)
	./$(BIN) migrate up

.PHONY: lint
lint: lint/openapi ## go vet, staticcheck, gofmt, the OpenAPI validators, and no function above cyclomatic complexity 20
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(GOCYCLO) -over 20 -ignore '_test\.go$$' .
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi

# Health probes answer 200 or 503 and nothing else, hence no 4xx response
# (Redocly's operation-4xx-response). Without npx the target is skipped
# with a message, except under CI, where it fails.
.PHONY: lint/openapi
lint/openapi: ## Validate docs/openapi.yaml with Redocly CLI and swagger-cli (npx, from npm's registry)
	@if ! command -v npx >/dev/null 2>&1; then \
	  if [ -n "$$CI" ]; then echo "lint/openapi: npx not found: install Node.js (CI requires the OpenAPI validators)"; exit 1; fi; \
	  echo "lint/openapi: SKIPPED: npx not found; install Node.js to run Redocly CLI and swagger-cli on docs/openapi.yaml"; exit 0; \
	fi; \
	export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true; \
	npx --yes $(REDOCLY) lint --format=stylish --skip-rule operation-4xx-response docs/openapi.yaml 2>&1 | grep -v '[║╔╚]'; \
	test "$${PIPESTATUS[0]}" = 0 && npx --yes $(SWAGGER_CLI) validate docs/openapi.yaml

.PHONY: test
test: lint ## Lint, then every test (needs Postgres: TEST_DATABASE_URL), then a short fuzz of every parser
	$(GO) test -count=1 -timeout 25m ./...
	$(MAKE) --no-print-directory fuzz

.PHONY: test/race
test/race: ## Every test with the race detector
	$(GO) test -race -count=1 -timeout 30m ./...

.PHONY: test/chaos
test/chaos: build ## The long fault tests (kill -9, Postgres restart, fault storms) at full size
	BOTQ_CHAOS=full $(GO) test -count=1 -timeout 60m -run 'Chaos' -v ./cmd/botq/

.PHONY: test/soak
test/soak: ## The soak test: 2 processes, 60 actions/s with bursts and faults, for SOAK (default 2h); samples, profiles, plots in SOAK_OUT
	@mkdir -p $(SOAK_OUT)
	BOTQ_SOAK=$(SOAK) BOTQ_SOAK_OUT=$(abspath $(SOAK_OUT)) $(GO) test -count=1 -timeout 0 -run '^TestSoak$$' -v ./cmd/botq/
	@if command -v gnuplot >/dev/null; then gnuplot -e "in='$(SOAK_OUT)/samples.csv'; out='$(SOAK_OUT)'" docs/soak/plot.gp && echo "plots in $(SOAK_OUT)"; else echo "no gnuplot: no plots (apt-get install gnuplot-nox)"; fi

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 5000 inputs)
	@set -e; log=$$(mktemp "$${TMPDIR:-/tmp}/botq-fuzz.XXXXXX"); trap 'rm -f "$$log"' EXIT; \
	for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg > "$$log" 2>&1 || { cat "$$log"; exit 1; }; \
	  done; \
	done

.PHONY: bench
bench: build ## The benchmark: botq against plain River, same machine, same run, three rounds (botq bench)
	./$(BIN) bench --rounds 3 --pg-stats --max-load 0.7 --max-busy 0.3 --out docs/bench.json

.PHONY: verify
verify: ## Fail if go.mod/go.sum or formatting are not tidy
	$(GO) mod tidy -diff
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi

.PHONY: db/reset/test
db/reset/test: ## Drop and recreate the test database
	psql "$${TEST_DATABASE_URL%/*}/postgres" -c 'DROP DATABASE IF EXISTS test' -c 'CREATE DATABASE test'
