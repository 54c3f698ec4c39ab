# Aegis-Flow. `make test` is the README's test command and what CI runs.
GO ?= go

.PHONY: test vet unit bench fuzz run build

test: vet unit bench

vet:
	@test -z "$$(gofmt -l cmd internal config)" || (echo "gofmt needed:"; gofmt -l cmd internal config; exit 1)
	$(GO) vet ./...

unit:
	$(GO) test -race -shuffle=on -timeout 20m ./...

# A short benchmark pass so that benchmarks keep compiling and running.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 50x -timeout 10m ./...

build:
	$(GO) build -o bin/aegis ./cmd/aegis

run:
	$(GO) run ./cmd/aegis
