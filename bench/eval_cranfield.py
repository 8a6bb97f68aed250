"""Ranking quality on the full Cranfield 1400 collection: engine order vs. rescoring.

    .venv/bin/python bench/eval_cranfield.py [--window 30] [--queries N] [--models minilm,random-ce] [--policies replace,linear,rrf]

Runs `rescore-sidecar eval cranfield` (local OpenSearch + a sidecar started for the run) once per
model and prints each Markdown table and the machine. Models:

* `minilm` — the pretrained all-MiniLM-L6-v2 **bi-encoder** the sidecar serves by default (cosine
  similarity of query and passage embeddings); configs replace, linear 0.5 and rrf.
* `random-ce` — a **randomly initialised** cross-encoder of the cross-encoder/ms-marco-MiniLM-L6-v2
  shape (seed 0, `rescore_sidecar.tools.seeded_models`): what an untrained model does to the ranking; replace only.

No pretrained cross-encoder can be downloaded here, so no cross-encoder quality number is claimed.

    .venv/bin/python bench/eval_cranfield.py --precisions torch:fp32,openvino:fp32,openvino:bf16,openvino:int8

Precision check (no engine): the pretrained all-MiniLM-L6-v2 bi-encoder on each backend:precision
ranks all 1400 Cranfield documents for each of the 225 queries by cosine similarity (dense
retrieval, the hardest case: every score matters, not only a 30-document window). Printed per
configuration: nDCG@10 (mean over judged queries), its difference to the first configuration
(the reference, torch fp32), and the per-query Spearman rank correlation of the 1400 scores with
the reference (median and minimum over queries). A precision is a default only when its nDCG@10 is
within 0.005 of fp32 (issue 12).
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
    p.add_argument("--precisions", default="", help="backend:precision list: run the precision check instead")
    p.add_argument("--data", default="", help="Cranfield folder (default: the shared data folder)")
    args = p.parse_args()
    if args.precisions:
        return precision_check(args.precisions.split(","), args.data, args.out)
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


def precision_check(configs: list[str], data: str, out: str) -> int:
    import time

    import numpy as np
    from scipy.stats import spearmanr

    from rescore_sidecar.sidecar.backends import load_backend
    from rescore_sidecar.sidecar.config import ModelSpec, offline_model_dir
    from rescore_sidecar.sidecar.core.calibration import calibration_inputs
    from rescore_sidecar.sidecar.core.tokenization import tokenize_request
    from rescore_sidecar.tools.eval.collection import read_cranfield, shared_data_dir
    from rescore_sidecar.tools.eval.metrics import per_query_scores

    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from sidecar_throughput import machine

    collection = read_cranfield(data or shared_data_dir() / "cranfield")
    doc_ids = list(collection.documents)
    texts = [collection.documents[d].full_text() for d in doc_ids]
    query_ids = collection.judged_queries()
    model = str(offline_model_dir())
    scores: dict[str, np.ndarray] = {}
    print(f"model: all-MiniLM-L6-v2 bi-encoder ({model}) | {len(doc_ids)} documents x {len(query_ids)} judged queries")
    print(f"machine: {machine()}\n")
    print("| backend:precision | nDCG@10 | vs first | Spearman median | Spearman min | embed s |")
    print("|---|---|---|---|---|---|")
    reference = None
    for config in configs:
        runtime, _, precision = config.partition(":")
        backend = load_backend(ModelSpec(source=model, kind="bi-encoder", backend=runtime, precision=precision),
                               device="cpu", cache_dir=str(pathlib.Path(out) / "artefacts"), calibrate=calibration_inputs)
        started = time.perf_counter()

        def embed(batch: list[str]) -> np.ndarray:
            sequences = tokenize_request(backend, batch[0], batch[1:]).sequences
            return backend.forward(sequences)

        docs = np.concatenate([embed(["", *texts[i:i + 32]])[1:] for i in range(0, len(texts), 32)])
        queries = np.concatenate([embed(["", *[collection.queries[q] for q in query_ids[i:i + 32]]])[1:]
                                  for i in range(0, len(query_ids), 32)])
        elapsed = time.perf_counter() - started
        sims = queries @ docs.T
        scores[config] = sims
        rankings = {q: [doc_ids[j] for j in np.argsort(-sims[i], kind="stable")[:100]] for i, q in enumerate(query_ids)}
        ndcg = per_query_scores(collection.qrels, rankings, ["ndcg@10"], query_ids)["ndcg@10"]
        mean = float(np.mean(list(ndcg.values())))
        if reference is None:
            reference = (config, mean)
            rho = np.ones(len(query_ids))
        else:
            rho = np.array([spearmanr(scores[reference[0]][i], sims[i]).statistic for i in range(len(query_ids))])
        print(f"| {config} | {mean:.4f} | {mean - reference[1]:+.4f} | {np.median(rho):.4f} | {rho.min():.4f} "
              f"| {elapsed:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
