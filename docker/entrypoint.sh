#!/bin/sh
# Serves the models baked in at build time (bake_models.py writes models.env) unless the
# caller chose models with RESCORE_MODELS. `exec` replaces this shell, so the sidecar is PID 1
# and receives SIGTERM itself (it installs a handler and drains).
set -eu
baked=/opt/rescore/models/models.env
if [ -z "${RESCORE_MODELS:-}" ] && [ -f "$baked" ]; then
    RESCORE_MODELS=$(cat "$baked")
    export RESCORE_MODELS
fi
exec "$@"
