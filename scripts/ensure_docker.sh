#!/usr/bin/env bash
# Makes sure a Docker engine with BuildKit answers; prints the docker client to build with.
#
# Installs Debian's docker.io when no engine is there (root only) and starts dockerd when it is
# not running: through systemd where it runs, else directly, detached, logging to
# /var/log/rescore-dockerd.log. A dockerd started here uses no bridge network and leaves iptables
# alone (the builds and tests use --network host / none), so it changes nothing else on the host.
# The client printed is one whose `docker build` speaks BuildKit: the one on PATH when it has the
# buildx plugin or is older than 23, else Debian's /usr/bin/docker.
# Exit status 0 with the client path on stdout; non-zero with the reason on stderr.
set -euo pipefail

say() { echo "ensure_docker: $*" >&2; }

client_ok() {  # a client whose `docker build` uses BuildKit with DOCKER_BUILDKIT=1
    local c=$1 major
    [ -x "$c" ] || return 1
    "$c" buildx version >/dev/null 2>&1 && return 0
    major=$("$c" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)
    [ -n "$major" ] && [ "$major" -lt 23 ]
}

pick_client() {
    local c
    for c in "$(command -v docker || true)" /usr/bin/docker; do
        if [ -n "$c" ] && client_ok "$c"; then echo "$c"; return 0; fi
    done
    return 1
}

if ! command -v dockerd >/dev/null 2>&1 || ! pick_client >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
        say "no Docker engine (dockerd with a BuildKit client) and not root: install docker.io"
        exit 1
    fi
    say "installing docker.io from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q docker.io >&2 || { apt-get update -q >&2 && apt-get install -y -q docker.io >&2; }
fi
client=$(pick_client) || { say "no docker client with BuildKit support"; exit 1; }

if ! "$client" info >/dev/null 2>&1; then
    exec 9>/run/rescore-dockerd.lock
    flock 9
    if ! "$client" info >/dev/null 2>&1; then
        if [ -d /run/systemd/system ]; then
            say "starting docker through systemd"
            systemctl start docker >&2
        else
            say "starting dockerd (log: /var/log/rescore-dockerd.log)"
            setsid nohup dockerd --bridge=none --iptables=false --ip6tables=false \
                >/var/log/rescore-dockerd.log 2>&1 < /dev/null 9>&- &
        fi
        for _ in $(seq 60); do
            "$client" info >/dev/null 2>&1 && break
            sleep 1
        done
    fi
fi
if ! "$client" info >/dev/null 2>&1; then
    say "the Docker engine did not answer within 60 s; see /var/log/rescore-dockerd.log"
    tail -n 20 /var/log/rescore-dockerd.log >&2 2>/dev/null || true
    exit 1
fi
echo "$client"
