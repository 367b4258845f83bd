#!/usr/bin/env bash
# make images: build the local images the tests and the demo run. Nothing is pulled: these
# machines have no container registry, so everything starts from a Debian base made here
# with debootstrap. An image is skipped when it exists and was built from the same build
# context (label llm-gitops.context); edit a context and the next run rebuilds that image.
#
#   llm-gitops-test/debian:bookworm   debootstrap minbase + python3, python3-venv, ca-certificates
#   llm-gitops-test/stub:1            the vLLM/Ollama/llama.cpp stand-in (images/stub)
#   llm-gitops-test/litellm:<ver>     the real LiteLLM proxy, litellm[proxy]==<ver> (images/litellm)
#   llm-gitops-test/redis:1           Debian's redis-server, the demo's cache (images/redis)
#
# `images.sh stub redis litellm` (any of them) builds only those (make bench needs the stub only).
set -euo pipefail
only=" $* "
wanted() { [[ $only == "  " || $only == *" $1 "* ]]; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# One pin for the proxy: the version the test extra installs (tests check config/demo agrees).
LITELLM_VERSION=$(grep -oE 'litellm==[0-9.]+' "$root/pyproject.toml" | head -1 | cut -d= -f3)
BASE=llm-gitops-test/debian:bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

label_of() { docker image inspect --format "{{ index .Config.Labels \"llm-gitops.context\" }}" "$1" 2>/dev/null || true; }
digest_of() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum; echo "$2") | sha256sum | cut -c1-16; }

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || {
        echo "images: debootstrap is missing: apt-get install debootstrap (make engine does)" >&2; exit 1; }
    rootfs=$(mktemp -d /tmp/llm-gitops-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    echo "images: $BASE: debootstrap bookworm from $MIRROR (about a minute)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || {
        echo "images: debootstrap failed; the last lines of $rootfs.log:" >&2; tail -n 20 "$rootfs.log" >&2; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
    rm -rf "$rootfs" "$rootfs.log"
    trap - EXIT
else
    echo "images: $BASE exists"
fi

build() {  # build NAME CONTEXT_DIR [--build-arg ...]
    local name=$1 dir=$2; shift 2
    local want; want=$(digest_of "$dir" "$*")
    if [[ $(label_of "$name") == "$want" ]]; then
        echo "images: $name exists"
        return
    fi
    echo "images: building $name"
    local ctx; ctx=$(mktemp -d /tmp/llm-gitops-ctx.XXXXXX)
    cp -r "$dir"/. "$ctx"/
    [[ -f /etc/ssl/certs/ca-certificates.crt ]] && cp /etc/ssl/certs/ca-certificates.crt "$ctx"/
    [[ -f "$ctx/ca-certificates.crt" ]] || touch "$ctx/ca-certificates.crt"
    if ! docker build --network host --label "llm-gitops.context=$want" \
            --build-arg "BASE=$BASE" "$@" -t "$name" "$ctx" >"$ctx.log" 2>&1; then
        echo "images: building $name failed; the last lines of the build:" >&2
        tail -n 25 "$ctx.log" >&2
        rm -rf "$ctx" "$ctx.log"
        exit 1
    fi
    rm -rf "$ctx" "$ctx.log"
}

wanted stub && build llm-gitops-test/stub:1 "$here/images/stub"
wanted redis && build llm-gitops-test/redis:1 "$here/images/redis"
wanted litellm && build "llm-gitops-test/litellm:$LITELLM_VERSION" "$here/images/litellm" --build-arg "LITELLM_VERSION=$LITELLM_VERSION"
echo "images: ready"
