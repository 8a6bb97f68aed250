#!/usr/bin/env bash
# Creates .venv with every dependency (all extras) and the project installed editable.
# Runs pip only when pyproject.toml or constraints.txt changed since the last run; pip's own
# wheel cache (~/.cache/pip) keeps a fresh clone from downloading torch again.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
stamp=.venv/.rescore-bootstrap
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
echo "bootstrap: installing dependencies into .venv (first run downloads torch, a few GB)" >&2
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check --retries 5 --timeout 60 \
    -c constraints.txt -e '.[all]'
echo "$want" > "$stamp"
echo "bootstrap: done" >&2
