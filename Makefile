# make test is THE test command (CI runs it through .ci/run).

GO ?= go

.PHONY: all engine images test run

all: test

# Install (Debian packages) and start the Docker engine and the local registry.
engine:
	bash scripts/docker-up.sh

# Build the test images unless they are current.
images: engine
	$(GO) run ./internal/testenv/cmd/buildimages

test: images
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

run: engine
	$(GO) run ./cmd/opensbx
