#!/usr/bin/env bash
# Prints the tag of a Debian bookworm base image with Python from Debian's packages, building it
# the first time with mmdebstrap | docker import (no container registry needed).
#
# The tag carries a hash of the recipe below, so a changed package list makes a new base and an
# unchanged one is built once per Docker engine. The images take it as their PYTHON_IMAGE.
# Usage: scripts/ensure_base_image.sh [DOCKER_CLIENT]   (default: scripts/ensure_docker.sh's)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
docker=${1:-$("$here/ensure_docker.sh")}
say() { echo "ensure_base_image: $*" >&2; }

suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
packages=python3,python3-venv,ca-certificates,passwd,netbase
# Documentation and translations are not needed in a server image.
dpkgopts=(--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
          --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*')
changes=(--change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]')
recipe="$suite $packages ${dpkgopts[*]} ${changes[*]}"
tag="rescore-sidecar/base:$suite-python3-$(printf '%s' "$recipe" | sha256sum | cut -c1-12)"

if "$docker" image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag"
    exit 0
fi
if ! command -v mmdebstrap >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || { say "mmdebstrap is missing and we are not root"; exit 1; }
    say "installing mmdebstrap from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q mmdebstrap >&2 || { apt-get update -q >&2 && apt-get install -y -q mmdebstrap >&2; }
fi
mkdir -p /run/lock
exec 9>/run/lock/rescore-base-image.lock
flock 9
if ! "$docker" image inspect "$tag" >/dev/null 2>&1; then  # another caller may have made it
    say "building $tag with mmdebstrap (once, ~30 s)"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mmdebstrap --variant=minbase --include="$packages" "${dpkgopts[@]}" "$suite" "$tmp/rootfs.tar" \
        "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security $suite-security main" >&2
    "$docker" import "${changes[@]}" "$tmp/rootfs.tar" "$tag" >&2
fi
echo "$tag"
