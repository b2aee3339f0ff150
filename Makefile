# make test is THE test command (CI runs it through .ci/run).

GO ?= go

.PHONY: all engine images test run agent agent-check

all: test

# Install (Debian packages) and start the Docker engine and the local registry.
engine:
	bash scripts/docker-up.sh

# Build the test images unless they are current.
images: engine
	$(GO) run ./internal/testenv/cmd/buildimages

test: images agent-check
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

# Rebuild the embedded opensbx-agent programs (internal/agent/bin) from source.
agent:
	$(GO) generate ./internal/agent/...

# Fail when the committed agent programs differ from a fresh build.
agent-check:
	$(GO) run ./internal/agent/bin/gen -check

run: engine
	$(GO) run ./cmd/opensbx
