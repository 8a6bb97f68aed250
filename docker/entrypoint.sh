#!/bin/sh
# Serves the models baked in at build time (bake_models.py writes models.env) unless the
# caller configures the sidecar itself: RESCORE_MODELS, or a config file (RESCORE_CONFIG, as the
# Helm chart does; the environment would override the file's models).
# `exec` replaces this shell, so the sidecar is PID 1 and receives SIGTERM itself (and drains).
set -eu
baked=/opt/rescore/models/models.env
if [ -z "${RESCORE_MODELS:-}" ] && [ -z "${RESCORE_CONFIG:-}" ] && [ -f "$baked" ]; then
    RESCORE_MODELS=$(cat "$baked")
    export RESCORE_MODELS
fi
exec "$@"
