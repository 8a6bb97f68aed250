"""Ranking quality on the full Cranfield 1400 collection: engine order vs. rescoring.

    .venv/bin/python bench/eval_cranfield.py [--window 30] [--queries N] [--models minilm,random-ce] [--policies replace,linear,rrf]

Runs `rescore-sidecar eval cranfield` (local OpenSearch + a sidecar started for the run) once per
model and prints each Markdown table and the machine. Models:

* `minilm` — the pretrained all-MiniLM-L6-v2 **bi-encoder** the sidecar serves by default (cosine
  similarity of query and passage embeddings); configs replace, linear 0.5 and rrf.
* `random-ce` — a **randomly initialised** cross-encoder of the cross-encoder/ms-marco-MiniLM-L6-v2
  shape (seed 0, `rescore_sidecar.tools.seeded_models`): what an untrained model does to the ranking; replace only.

No pretrained cross-encoder can be downloaded here, so no cross-encoder quality number is claimed.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile

from rescore_sidecar.tools.eval import cli  # noqa: E402

POLICY_SPECS = {"replace": "policy=replace", "linear": "policy=linear,weight=0.5", "rrf": "policy=rrf"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--window", type=int, default=30)
    p.add_argument("--queries", type=int, default=0, help="first N judged queries (0 = all 225)")
    p.add_argument("--models", default="minilm,random-ce")
    p.add_argument("--out", default="bench-out/eval-cranfield")
    p.add_argument("--engine", default="opensearch")
    p.add_argument("--policies", default="replace,linear,rrf", help="configs of the minilm run")
    args = p.parse_args()
    common = ["cranfield", "--window", str(args.window), "--queries", str(args.queries), "--engine", args.engine]
    runs = {
        "minilm": ([a for pol in args.policies.split(",") for a in ("--config", POLICY_SPECS[pol])], []),
        "random-ce": (["--config", "policy=replace"], ["random-ce-minilm-shape={model}"]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            configs, models = runs[name]
            if models:
                from rescore_sidecar.tools.seeded_models import build_model

                path = build_model(pathlib.Path(tmp) / name, kind="cross-encoder", arch="minilm-l6-h384", seed=0)
                models = [m.format(model=path) for m in models]
            out = pathlib.Path(args.out) / name
            argv = common + configs + [a for m in models for a in ("--model", m)] + ["--out", str(out)]
            print(f"\n## {name}: rescore-sidecar eval {' '.join(argv)}\n", flush=True)
            rc = cli.main(argv)
            if rc:
                return rc
            print(f"machine: {json.loads((out / 'report.json').read_text())['context']['machine']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
