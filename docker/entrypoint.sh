#!/bin/sh
# Serves the models baked in at build time (bake_models.py writes models.env) unless the caller
# names models itself: RESCORE_MODELS, or a `models` key in the config file (RESCORE_CONFIG, as
# the Helm chart sets it; its ConfigMap has `models` only when model.models is given). The
# environment would override the file's models, so it is set only when the file has none.
# `exec` replaces this shell, so the sidecar is PID 1 and receives SIGTERM itself (and drains).
set -eu
baked=/opt/rescore/models/models.env

config_names_models() {
    [ -n "${RESCORE_CONFIG:-}" ] && [ -f "$RESCORE_CONFIG" ] || return 1
    python3 - "$RESCORE_CONFIG" <<'PY'
import sys, yaml
try:
    with open(sys.argv[1]) as f:
        data = yaml.safe_load(f)
except Exception:
    sys.exit(0)  # unreadable or invalid: leave it to the sidecar, which says what is wrong
sys.exit(0 if not isinstance(data, dict) or data.get("models") else 1)
PY
}

if [ -z "${RESCORE_MODELS:-}" ] && [ -f "$baked" ] && ! config_names_models; then
    RESCORE_MODELS=$(cat "$baked")
    export RESCORE_MODELS
fi
exec "$@"
