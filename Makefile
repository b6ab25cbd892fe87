# posttrain build and test targets. `make test` is the README's test command and what CI runs.
GO ?= go
# Packages whose code runs goroutines; they also run under the race detector.
RACE_PKGS ?= ./kernels/... ./datastore/... ./artifacts/... ./sampling/... ./activities/... ./inference/...
FUZZTIME ?= 5s

.PHONY: all build test vet race fuzz bench demo clean

all: build

build:
	$(GO) build -o bin/posttrain ./cmd/posttrain

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

test: vet
	$(GO) test -count=1 -timeout 30m ./...
	$(GO) test -race -short -count=1 -timeout 20m $(RACE_PKGS)

race:
	$(GO) test -race -count=1 -timeout 30m $(RACE_PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./kernels/ ./transformer/ ./inference/

demo: build
	./bin/posttrain demo

clean:
	rm -rf bin
