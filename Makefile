# make test is THE test command (CI runs it through .ci/run).

GO ?= go
# How long each fuzz target runs: a few seconds in `make test`, longer with
# `make fuzz FUZZTIME=10m`.
FUZZTIME ?= 3s

.PHONY: all engine images test kube-test fuzz fuzz-smoke run bench load agent agent-check

all: test

# Install (Debian packages) and start the Docker engine (with gVisor's runsc
# registered) and the local registry.
engine:
	bash scripts/docker-up.sh

# Build the test images unless they are current.
images: engine
	$(GO) run ./internal/testenv/cmd/buildimages

# The command and file tests of the root package run twice: through the
# sandboxes' agent (the default) and through the engine alone.
ENGINE_PATH_TESTS = 'Test(Exec|Run|Command|Kill|Follow|Stdin|Output|Concurrent|Files?|Read|Write|List|Delete|Upload|Download|Stat|Open)'

# Every stage runs even when one before it failed, so that one run shows
# every failure (a Docker failure does not hide the Kubernetes result); the
# target fails if any did.
test: images agent-check
	$(GO) vet ./...
	@status=0; \
	$(GO) test -count=1 -timeout 20m ./... || { status=1; echo "make test: the Docker suite FAILED" >&2; }; \
	OPENSBX_TEST_NO_AGENT=1 $(GO) test -count=1 -timeout 10m -run $(ENGINE_PATH_TESTS) . || { status=1; echo "make test: the engine-path suite FAILED" >&2; }; \
	$(MAKE) kube-test || { status=1; echo "make test: the Kubernetes suite FAILED" >&2; }; \
	$(MAKE) fuzz-smoke || { status=1; echo "make test: the fuzz smoke FAILED" >&2; }; \
	exit $$status

# The Kubernetes backend's tests against a real throw-away single-node
# cluster (docs/kubernetes-cluster.md): built (cached in /var/cache/opensbx),
# started, and torn down again, also when the tests fail. A cluster that was
# already up is used and left up.
kube-test:
	bash scripts/kube-test.sh

# Every fuzz target for FUZZTIME each (one at a time: go test -fuzz takes a
# single target). A target that finds a failing input fails the run; one
# whose run failed without writing one (the fuzzing engine's own trouble, as
# seen once under load) is shown and run once more.
fuzz-smoke:
	@set -e; for pkg in $$($(GO) list ./...); do \
		dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
		for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do \
			echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
			log=$$(mktemp /tmp/opensbx-fuzz.XXXXXX); \
			if ! $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) -parallel 2 $$pkg >$$log 2>&1; then \
				cat $$log; \
				if grep -q 'Failing input written to' $$log; then rm -f $$log; exit 1; fi; \
				echo "fuzz $$pkg $$t: failed without a failing input (the fuzzing engine itself); once more"; \
				$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) -parallel 2 $$pkg || { rm -f $$log; exit 1; }; \
			fi; \
			rm -f $$log; \
		done; \
	done

fuzz:
	$(MAKE) fuzz-smoke FUZZTIME=$(FUZZTIME)

# Rebuild the embedded opensbx-agent programs (internal/agent/bin) from source.
agent:
	$(GO) generate ./internal/agent/...

# Fail when the committed agent programs differ from a fresh build.
agent-check:
	$(GO) run ./internal/agent/bin/gen -check

run: engine
	$(GO) run ./cmd/opensbx

# The benchmark table (Manager vs raw SDK); see docs/benchmarks.md.
bench: images
	$(GO) run ./cmd/opensbx-bench

# 200 clients for 60 s against a server on loopback; see docs/load.md.
load: images
	$(GO) run ./cmd/opensbx-load
