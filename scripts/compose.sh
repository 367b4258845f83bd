#!/usr/bin/env bash
# make bench: the docker-compose that llm-gitops is compared with: Debian's docker-compose
# 1.29.2 (the Python one, package docker-compose). Like scripts/engine.sh for the engine:
#
# 1. If `docker-compose` is on PATH, use it (and say which version, since the bench's
#    numbers are for 1.29.2).
# 2. Otherwise, as root on Debian, `apt-get install -y docker-compose`.
# 3. Otherwise say what to do, and fail.
set -euo pipefail

if command -v docker-compose >/dev/null 2>&1; then
    version=$(docker-compose version --short 2>/dev/null || echo unknown)
    echo "compose: using docker-compose $version ($(command -v docker-compose))"
    if [[ $version != 1.29.2 ]]; then
        echo "compose: note: the numbers in docs/BENCHMARKS.md are for Debian's docker-compose 1.29.2" >&2
    fi
    exit 0
fi

if [[ $(id -u) -ne 0 || ! -f /etc/debian_version ]]; then
    echo "compose: docker-compose is missing, and this is not root on Debian, so make bench cannot" >&2
    echo "         install it. Install docker-compose 1.29.2 (Debian: apt-get install docker-compose;" >&2
    echo "         elsewhere: pip install docker-compose==1.29.2) and put it on PATH, then run make bench again." >&2
    exit 1
fi

echo "compose: installing Debian's docker-compose (apt-get)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
echo "compose: installed docker-compose $(docker-compose version --short)"
