#!/usr/bin/env bash
# Builds the sidecar images here, without any container registry:
#   scripts/build_images.sh [cpu] [gpu] [-- EXTRA DOCKER BUILD ARGS]      (default: cpu gpu)
# 1. starts (and if need be installs) the Docker engine: scripts/ensure_docker.sh;
# 2. makes the Debian bookworm + Python base once: scripts/ensure_base_image.sh
#    (BASE_IMAGE=python:3.11-slim-bookworm uses a registry base instead);
# 3. builds docker/<flavor>.Dockerfile on it as $IMAGE_REPO:$IMAGE_TAG-<flavor>, the names the
#    Helm chart expects (repository `rescore-sidecar`, tag <appVersion>-cpu / -gpu by default).
# Both images share their dependency layer; pip's downloads stay in a BuildKit cache mount.
# A CA bundle in $PIP_CERT (an intercepting proxy's) reaches pip as the build secret pip_ca.
# Prints one line per image: reference, size, build seconds.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
flavors=()
while [ $# -gt 0 ]; do
    case $1 in
        --) shift; break ;;
        cpu|gpu) flavors+=("$1"); shift ;;
        *) echo "usage: $0 [cpu] [gpu] [-- DOCKER BUILD ARGS]" >&2; exit 2 ;;
    esac
done
[ ${#flavors[@]} -gt 0 ] || flavors=(cpu gpu)

docker=$("$root/scripts/ensure_docker.sh")
base=${BASE_IMAGE:-$("$root/scripts/ensure_base_image.sh" "$docker")}
repo=${IMAGE_REPO:-rescore-sidecar}
tag=${IMAGE_TAG:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/helm/Chart.yaml")}
secrets=()
if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then
    secrets=(--secret "id=pip_ca,src=$PIP_CERT")
fi

for flavor in "${flavors[@]}"; do
    ref="$repo:$tag-$flavor"
    start=$(date +%s)
    echo "build_images: $ref from docker/$flavor.Dockerfile on $base" >&2
    # --network host: RUN steps reach the package index through the host's own network, which
    # also works where dockerd runs without a bridge (as ensure_docker.sh starts it).
    DOCKER_BUILDKIT=1 "$docker" build --network host --progress plain \
        -f "$root/docker/$flavor.Dockerfile" --build-arg "PYTHON_IMAGE=$base" \
        "${secrets[@]}" -t "$ref" "$@" "$root" >&2
    size=$("$docker" image inspect --format '{{.Size}}' "$ref")
    echo "$ref $((size / 1000000))MB $(( $(date +%s) - start ))s"
done
