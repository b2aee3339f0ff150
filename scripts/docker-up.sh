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

say() { printf 'docker-up: %s\n' "$*"; }
die() { printf 'docker-up: error: %s\n' "$*" >&2; exit 1; }

if [[ $EUID -ne 0 ]]; then
	die "must run as root"
fi

# 1. Packages.
# busybox-static, not busybox: the test image is FROM scratch, without libc.
if [[ ! -x $DOCKERD || ! -x /bin/busybox || ! -x $REGISTRY || ! -x $DOCKER ]] ||
	! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q '^install ok installed$'; then
	say "installing docker.io busybox-static docker-registry"
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		docker.io busybox-static docker-registry
fi

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
