#!/usr/bin/env bash
# Prints the path of Prometheus' `promtool` (checks and unit-tests the chart's alert rules),
# installing Debian's `prometheus` package, which ships it, when it is missing (root only; once per
# machine, about a minute). No daemon is started: the package only installs.
# Exit status 0 with the path on stdout; non-zero with the reason on stderr.
set -euo pipefail

if found=$(command -v promtool); then
    echo "$found"
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_promtool: promtool is not installed and cannot be (needs root and apt-get): install Debian's prometheus package" >&2
    exit 1
fi
exec 9>/run/rescore-promtool.lock
flock 9
if ! command -v promtool >/dev/null 2>&1; then
    echo "ensure_promtool: installing Debian's prometheus package for promtool (once per machine)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends prometheus >&2 \
        || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends prometheus >&2; }
fi
command -v promtool
