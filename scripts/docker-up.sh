#!/usr/bin/env bash
# docker-up.sh brings up what the tests and the server need on a Debian 12
# machine, as root: the Docker engine (Debian's docker.io, 20.10) and a local
# registry on 127.0.0.1:5000. It is idempotent: when everything already
# answers it only checks and exits within seconds. It never touches
# containers or images it did not create (it creates none).
set -euo pipefail

DOCKER=/usr/bin/docker # not the first docker on PATH: that may be a newer client
DOCKERD=/usr/sbin/dockerd
REGISTRY=/usr/bin/docker-registry
REGISTRY_ADDR=127.0.0.1:5000
REGISTRY_DIR=/var/lib/opensbx-registry
REGISTRY_CONFIG=$REGISTRY_DIR/config.yml
DOCKERD_LOG=/var/log/opensbx-dockerd.log
REGISTRY_LOG=/var/log/opensbx-registry.log
WAIT_SECONDS=60
RUNSC=/usr/bin/runsc
DAEMON_JSON=/etc/docker/daemon.json
RUNSC_JSON='{"runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=host"]}}}'

say() { printf 'docker-up: %s\n' "$*"; }
die() { printf 'docker-up: error: %s\n' "$*" >&2; exit 1; }

if [[ $EUID -ne 0 ]]; then
	die "must run as root"
fi

# 1. Packages.
# busybox-static, not busybox: the test image is FROM scratch, without libc.
# runsc is gVisor, the sandboxing OCI runtime (registered with dockerd below).
if [[ ! -x $DOCKERD || ! -x /bin/busybox || ! -x $REGISTRY || ! -x $DOCKER || ! -x $RUNSC ]] ||
	! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q '^install ok installed$'; then
	say "installing docker.io busybox-static docker-registry runsc"
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		docker.io busybox-static docker-registry runsc
fi

# 1b. gVisor: register runsc in daemon.json. On this kind of machine runsc
# needs --network=host: its own network stack refuses the namespace the
# engine makes. A daemon.json of someone else's is left alone unless it is
# plain enough to extend (no runtimes yet).
register_runsc() {
	if [[ ! -e $DAEMON_JSON ]]; then
		mkdir -p "$(dirname "$DAEMON_JSON")"
		printf '%s\n' "$RUNSC_JSON" >"$DAEMON_JSON"
		return 0
	fi
	grep -q '"runsc"' "$DAEMON_JSON" && return 0
	if grep -q '"runtimes"' "$DAEMON_JSON" || ! command -v python3 >/dev/null 2>&1; then
		say "warning: $DAEMON_JSON has runtimes of its own (or there is no python3 to merge it); add runsc by hand: $RUNSC_JSON"
		return 1
	fi
	python3 - "$DAEMON_JSON" "$RUNSC" <<'PY'
import json, sys
path, runsc = sys.argv[1], sys.argv[2]
with open(path) as f:
    cfg = json.load(f)
cfg.setdefault("runtimes", {})["runsc"] = {"path": runsc, "runtimeArgs": ["--network=host"]}
with open(path + ".opensbx-tmp", "w") as f:
    json.dump(cfg, f, indent=2)
    f.write("\n")
PY
	mv "$DAEMON_JSON.opensbx-tmp" "$DAEMON_JSON"
}

# 2. Engine.
engine_up() { "$DOCKER" info >/dev/null 2>&1; }

if engine_up; then
	say "engine up"
else
	say "starting dockerd (log: $DOCKERD_LOG)"
	setsid nohup "$DOCKERD" >>"$DOCKERD_LOG" 2>&1 </dev/null &
	pid=$!
	for ((i = 0; i < WAIT_SECONDS; i++)); do
		engine_up && break
		kill -0 "$pid" 2>/dev/null || { tail -n 20 "$DOCKERD_LOG" >&2; die "dockerd exited; see $DOCKERD_LOG"; }
		sleep 1
	done
	engine_up || die "dockerd did not answer within ${WAIT_SECONDS}s; see $DOCKERD_LOG"
	say "engine up"
fi

# 2b. Runtimes: dockerd reloads them on SIGHUP.
if ! "$DOCKER" info --format '{{range $k, $v := .Runtimes}}{{$k}} {{end}}' 2>/dev/null | grep -qw runsc; then
	if register_runsc; then
		say "registering runsc (gVisor) with dockerd"
		pkill -HUP -x dockerd || true
		for ((i = 0; i < 20; i++)); do
			"$DOCKER" info --format '{{range $k, $v := .Runtimes}}{{$k}} {{end}}' 2>/dev/null | grep -qw runsc && break
			sleep 0.5
		done
	fi
fi
if "$DOCKER" info --format '{{range $k, $v := .Runtimes}}{{$k}} {{end}}' 2>/dev/null | grep -qw runsc; then
	say "runsc (gVisor) registered"
else
	say "warning: runsc is not registered; the gVisor tests will be skipped"
fi

# 3. Registry.
registry_up() {
	if command -v curl >/dev/null 2>&1; then
		curl -fsS -o /dev/null --max-time 2 "http://$REGISTRY_ADDR/v2/" 2>/dev/null
		return
	fi
	# No curl: speak HTTP/1.0 over bash's /dev/tcp and look for a 200 status line.
	local status
	status=$(
		exec 2>/dev/null
		exec 3<>"/dev/tcp/${REGISTRY_ADDR%:*}/${REGISTRY_ADDR#*:}" || exit 1
		printf 'GET /v2/ HTTP/1.0\r\nHost: %s\r\n\r\n' "$REGISTRY_ADDR" >&3
		timeout 2 head -n 1 <&3
	) || return 1
	[[ $status == HTTP/1.[01]\ 200* ]]
}

if registry_up; then
	say "registry up at $REGISTRY_ADDR"
else
	mkdir -p "$REGISTRY_DIR"
	cat >"$REGISTRY_CONFIG" <<CONFIG
# Written by scripts/docker-up.sh: a local test registry, loopback only, no auth.
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
  headers:
    X-Content-Type-Options: [nosniff]
CONFIG
	say "starting registry on $REGISTRY_ADDR (log: $REGISTRY_LOG)"
	setsid nohup "$REGISTRY" serve "$REGISTRY_CONFIG" >>"$REGISTRY_LOG" 2>&1 </dev/null &
	pid=$!
	for ((i = 0; i < WAIT_SECONDS; i++)); do
		registry_up && break
		kill -0 "$pid" 2>/dev/null || { tail -n 20 "$REGISTRY_LOG" >&2; die "registry exited (port ${REGISTRY_ADDR#*:} taken by something else?); see $REGISTRY_LOG"; }
		sleep 1
	done
	registry_up || die "registry did not answer at http://$REGISTRY_ADDR/v2/ within ${WAIT_SECONDS}s; see $REGISTRY_LOG"
	say "registry up at $REGISTRY_ADDR"
fi
