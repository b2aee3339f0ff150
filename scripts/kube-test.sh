#!/usr/bin/env bash
# Runs the Kubernetes backend's tests (make kube-test) against the
# throw-away single-node cluster of internal/kubeenv: starts it (building
# its binaries when they are not cached), runs the tests, and tears it down
# again, also when they fail or this script is interrupted. A cluster that
# was already up is used and left up, unless an earlier run of this script
# started it and was killed before its teardown (the marker file says so):
# that one goes down at the end like a cluster of this run.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
GO=${GO:-go}
kubecluster() { "$GO" run ./internal/kubeenv/cmd/kubecluster "$@"; }
tests='Kube|Kubernetes'
log=$(mktemp /tmp/opensbx-kube-test.XXXXXX)

marker=/run/opensbx-kube-test.started # on tmpfs: a reboot ends the cluster too
ours=1
if kubecluster status >/dev/null 2>&1; then
	if [ -e "$marker" ]; then
		echo "kube-test: using the cluster an interrupted run left up (taken down at the end)"
	else
		echo "kube-test: using the cluster that is up (left up)"
		ours=0
	fi
fi
down() {
	if [ "$ours" = 1 ]; then
		kubecluster down || { echo "kube-test: the cluster's teardown failed; run: go run ./internal/kubeenv/cmd/kubecluster down" >&2; return 1; }
		rm -f "$marker"
	fi
}
trap 'down; exit 130' INT TERM

start=$(date +%s)
[ "$ours" = 1 ] && touch "$marker"
# Progress (a cold build of the binaries takes minutes) goes to stderr; the
# kubeconfig's path comes on stdout.
if ! kc=$(kubecluster up); then
	echo "kube-test: the cluster did not come up (logs: /var/log/opensbx-kube)" >&2
	down
	exit 1
fi
echo "kube-test: cluster up after $(( $(date +%s) - start ))s"
status=0
OPENSBX_KUBECONFIG=$kc "$GO" test -count=1 -timeout 10m -run "$tests" -v . ./httpapi/ ./internal/engine/kube/ ./sandboxtest/ ./cmd/opensbx/ >"$log" 2>&1 || status=$?
grep -E '^\s*(--- |ok|FAIL|PASS|panic)|_test.go' "$log"
if [ "$status" != 0 ]; then
	echo "kube-test: FAILED (full output: $log)" >&2
else
	rm -f "$log"
fi
down || status=1
trap - INT TERM
exit "$status"
