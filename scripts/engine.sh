#!/usr/bin/env bash
# make engine: make a Docker engine reachable for the tests and the demo.
#
# 1. If the engine at DOCKER_HOST (or the default socket) answers, use it.
# 2. Otherwise, as root on Debian, install docker.io and start
#    `dockerd --bridge=none --iptables=false` (no default bridge, no NAT: every container the
#    project runs uses host networking on 127.0.0.1), and wait until it answers.
# 3. Otherwise say what to do, and fail.
set -euo pipefail

answers() { timeout 10 docker info >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && answers; then
    echo "engine: using the Docker engine at ${DOCKER_HOST:-the default socket}"
    exit 0
fi

if [[ -n "${DOCKER_HOST:-}" ]]; then
    echo "engine: DOCKER_HOST=$DOCKER_HOST does not answer (docker info failed)." >&2
    echo "        Start that engine, or unset DOCKER_HOST to let make engine start a local one." >&2
    exit 1
fi

if [[ $(id -u) -ne 0 || ! -f /etc/debian_version ]]; then
    echo "engine: no Docker engine answers, and this is not root on Debian, so make engine" >&2
    echo "        cannot install one. Install Docker (https://docs.docker.com/engine/install/)," >&2
    echo "        start it, and make sure 'docker info' works for this user; or set DOCKER_HOST." >&2
    exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
    echo "engine: installing docker.io and debootstrap (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi

log=/var/log/llm-gitops-dockerd.log
echo "engine: starting dockerd --bridge=none --iptables=false (log: $log)"
setsid dockerd --bridge=none --iptables=false >"$log" 2>&1 < /dev/null &
for _ in $(seq 1 60); do
    if answers; then
        echo "engine: ready ($(docker version --format '{{.Server.Version}}'))"
        exit 0
    fi
    sleep 1
done
echo "engine: dockerd did not answer within 60 s; the last lines of $log:" >&2
tail -n 20 "$log" >&2
exit 1
