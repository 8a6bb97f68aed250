#!/usr/bin/env bash
# Creates .venv with every dependency (all extras) and the project installed editable.
# Runs pip only when pyproject.toml or constraints.txt changed since the last run; pip's own
# wheel cache (~/.cache/pip) keeps a fresh clone from downloading torch again.
# Prints one line per stage (what, then how long it took), so a first run that takes minutes
# says where it is; pip itself stays quiet (its progress bars flood CI logs).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
stamp=.venv/.rescore-bootstrap
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
started=$SECONDS
stage_start=$SECONDS
stage() {  # stage N "what": announces a stage; `took` then says how long it took
    echo "bootstrap [$1/4] $2" >&2
    stage_start=$SECONDS
}
took() {
    echo "bootstrap       done in $((SECONDS - stage_start)) s" >&2
}
echo "bootstrap: installing dependencies into .venv (first run downloads torch, a few GB; several minutes)" >&2
if [ -x .venv/bin/python ]; then
    stage 1 "virtual environment: .venv exists, kept"
else
    stage 1 "virtual environment: creating .venv with $("$python" --version 2>&1)"
    "$python" -m venv .venv
    took
fi
stage 2 "upgrading pip"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
took
stage 3 "installing the project and every extra (torch, transformers, OpenVINO, engines' clients, test tools) pinned by constraints.txt"
.venv/bin/python -m pip install -q --disable-pip-version-check --retries 5 --timeout 60 \
    -c constraints.txt -e '.[all]'
took
stage 4 "recording the stamp (the next run skips pip until pyproject.toml or constraints.txt change)"
echo "$want" > "$stamp"
echo "bootstrap: done in $((SECONDS - started)) s; .venv holds $(du -sh .venv 2>/dev/null | cut -f1)" >&2
