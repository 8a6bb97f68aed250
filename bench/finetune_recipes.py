"""Which training-set recipe teaches the `finetune` cross-encoder on Cranfield: a quick check, no sidecar.

    RESCORE_DATA_DIR=../shared/data python bench/finetune_recipes.py --hard 4 --random 4 --learning-rate 5e-5

Same split as `rescore-sidecar finetune cranfield` (seed 0, 40% held out) and the same trainer
(`tools/finetune/train.py`). Each training query gets its judged-relevant documents, `--hard`
negatives from BM25's top 50 and `--random` negatives drawn from the rest of the collection. The
held-out score is computed in-process: BM25's top 50 reranked by `CrossEncoder.predict`, the rest in
engine order, nDCG@10 as `eval` computes it. Use `finetune --eval` for the real path; this is for
comparing recipes cheaply. BM25 rankings are cached in --work (a local OpenSearch is started once).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import random
import time

from rescore_sidecar.tools.eval.cli import resolve_collection
from rescore_sidecar.tools.eval.metrics import per_query_scores
from rescore_sidecar.tools.eval.runner import index_collection, machine_description
from rescore_sidecar.tools.eval.services import open_engine
from rescore_sidecar.tools.finetune.cli import engine_rankings
from rescore_sidecar.tools.finetune.data import Pair, mine_negatives, split_queries
from rescore_sidecar.tools.finetune.train import TrainSettings, train

WINDOW = 50


def rankings(collection, query_ids, work: pathlib.Path) -> dict[str, list[str]]:
    cached = work / "bm25-rankings.json"
    if not cached.exists():
        with contextlib.ExitStack() as stack:
            engine = open_engine(stack, None, "opensearch", None)
            client = engine.client()
            stack.callback(client.close)
            index_collection(client, engine, "finetune-recipes", collection)
            cached.write_text(json.dumps(engine_rankings(client, "finetune-recipes", collection, query_ids, 100)))
    return json.loads(cached.read_text())


def training_pairs(collection, train_ids, ranked, hard: int, easy: int, seed: int) -> list[Pair]:
    rng = random.Random(seed)
    all_ids = sorted(collection.documents)
    pairs = []
    for q in train_ids:
        judged = collection.qrels.get(q, {})
        text = collection.queries[q]
        pairs += [Pair(text, collection.documents[d].full_text(), 1.0) for d, g in judged.items() if g > 0]
        negatives = mine_negatives(ranked[q][:WINDOW], judged, hard)
        rest = [d for d in all_ids if judged.get(d, 0) <= 0 and d not in negatives]
        negatives += rng.sample(rest, easy)
        pairs += [Pair(text, collection.documents[d].full_text(), 0.0) for d in negatives]
    return pairs


def mean_ndcg(collection, ranked: dict[str, list[str]], query_ids) -> float:
    scores = per_query_scores(collection.qrels, ranked, ["ndcg@10"], list(query_ids))["ndcg@10"]
    return sum(scores.values()) / len(scores)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hard", type=int, default=8)
    p.add_argument("--random", type=int, default=0)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=pathlib.Path, default=pathlib.Path("runs/finetune-recipes"))
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    collection = resolve_collection("cranfield")
    split = split_queries(collection.judged_queries(), 0.4, args.seed)
    ranked = rankings(collection, list(split.train) + list(split.held_out), args.work)
    pairs = training_pairs(collection, split.train, ranked, args.hard, args.random, args.seed)
    out = args.work / f"hard{args.hard}-random{args.random}-lr{args.learning_rate:g}-ep{args.epochs:g}"
    started = time.monotonic()
    result = train(TrainSettings(output=out, learning_rate=args.learning_rate, epochs=args.epochs, seed=args.seed,
                                 overwrite=True, progress=False, save_steps=100_000), pairs)
    seconds = time.monotonic() - started
    from sentence_transformers.cross_encoder import CrossEncoder

    model = CrossEncoder(str(out), device="cpu")
    reranked = {}
    for q in split.held_out:
        top = ranked[q][:WINDOW]
        scores = model.predict([(collection.queries[q], collection.documents[d].full_text()) for d in top],
                               batch_size=64, show_progress_bar=False)
        reranked[q] = [d for _, d in sorted(zip(scores, top), key=lambda t: -t[0])] + ranked[q][WINDOW:]
    losses = [h["loss"] for h in result["log_history"] if "loss" in h]
    print(f"machine: {machine_description()}")
    print("| training set | lr | epochs | pairs | steps | train s | loss first -> last | held-out nDCG@10 | BM25 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.hard} hard + {args.random} random negatives | {args.learning_rate:g} | {args.epochs:g} | {len(pairs)} "
          f"| {result['global_step']} | {seconds:.0f} | {losses[0]:.3f} -> {losses[-1]:.3f} "
          f"| {mean_ndcg(collection, reranked, split.held_out):.4f} | {mean_ndcg(collection, ranked, split.held_out):.4f} |")


if __name__ == "__main__":
    main()
