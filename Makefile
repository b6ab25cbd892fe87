# posttrain build and test targets. `make test` is the README's test command and what CI
# runs (through .ci/run, which first makes sure PostgreSQL is up).
GO ?= go
# Packages whose code runs goroutines; they also run under the race detector.
RACE_PKGS ?= ./kernels/... ./datastore/... ./artifacts/... ./sampling/... ./activities/... ./inference/...
FUZZTIME ?= 5m

.PHONY: all build test vet race fuzz fuzz-short faults faults-short bench demo e2e-ui clean

all: build

build:
	$(GO) build -o bin/posttrain ./cmd/posttrain

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

# The whole suite, the race detector on the concurrent packages, and every fuzz target
# for a few seconds.
test: vet
	$(GO) test -count=1 -timeout 30m ./...
	$(GO) test -race -short -count=1 -timeout 20m $(RACE_PKGS)
	$(MAKE) fuzz-short

race:
	$(GO) test -race -count=1 -timeout 40m $(RACE_PKGS)

# Every fuzz target for FUZZTIME each (default 5m); crashes land in testdata/fuzz/.
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

fuzz-short:
	./scripts/fuzz.sh 3s

# Fault injection: SIGKILL the worker during reward training, sampling and DPO; restart
# PostgreSQL and the dev Temporal server mid-run; two pipelines on one worker. The short
# form (reward-model kill, bad run inputs, secrets) runs in `go test ./...`.
faults:
	POSTTRAIN_FAULTS_LONG=1 $(GO) test -count=1 -v -timeout 40m ./faults/

faults-short:
	$(GO) test -count=1 -timeout 15m ./faults/

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./kernels/ ./transformer/ ./inference/ ./sampling/ ./dpo/ ./reward/

# The browser check: headless Chromium starts PostTraining from the Web UI of a real
# `posttrain dev` (needs node >= 20, `apt-get install -y chromium`, PostgreSQL binaries).
e2e-ui:
	./e2e/ui.sh

demo: build
	./bin/posttrain demo

clean:
	rm -rf bin
