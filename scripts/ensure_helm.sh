#!/usr/bin/env bash
# Prints the path of a pinned helm v3 binary, building it from Go modules the first time.
#
# No binary download site is reachable from CI, only the Go module proxy, so helm is compiled
# with `go install` (a few minutes on 2 cores, once) and cached outside the repository:
#   ${RESCORE_CACHE_DIR:-~/.cache/rescore-sidecar}/bin/helm-<version>
# A lock keeps concurrent callers (parallel test workers) from building twice.
# Exit status 0 with the path on stdout; non-zero with the reason on stderr.
set -euo pipefail

version=${HELM_VERSION:-v3.22.0}
cache=${RESCORE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rescore-sidecar}
bin="$cache/bin/helm-$version"

if [ -x "$bin" ] && "$bin" version --short >/dev/null 2>&1; then
    echo "$bin"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    echo "ensure_helm: go is not installed; cannot build helm $version" >&2
    exit 1
fi

mkdir -p "$cache/bin"
exec 9>"$cache/bin/.helm-build.lock"
flock 9
if [ ! -x "$bin" ]; then  # another caller may have built it while we waited
    echo "ensure_helm: building helm $version from Go modules (first run only, a few minutes)" >&2
    tmp=$(mktemp -d "$cache/bin/.build.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    # -trimpath and -buildvcs=false: a reproducible binary that does not depend on the caller's cwd.
    GOBIN="$tmp" GOFLAGS="-buildvcs=false" CGO_ENABLED=0 \
        go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" \
        "helm.sh/helm/v3/cmd/helm@$version" >&2
    mv "$tmp/helm" "$bin"
fi
"$bin" version --short >/dev/null
echo "$bin"
