"""One evaluation run: index a collection, retrieve BM25 top-k through the connector, rescore
with each configuration through the sidecar, and score every ranking.

Engine order and every configuration go through the same connector wrapper (`RescoringOpenSearch`
/ `RescoringElasticsearch`): engine order with `rerank=False`, each configuration with its
options. The latency a configuration adds is the connector's own `_rescore.took_ms`: the time
from the engine's answer to the reordered response (sidecar round trip included).

How latency is measured (`latency_method`, written into every report): configurations that score
the same (query, document) pairs would otherwise be answered from the sidecar's score cache after
the first one, and look free. So every timed search asks the sidecar to bypass its cache
(`SidecarClientConfig.bypass_cache`: each pair is computed, nothing stored); the configurations
take turns per query in a rotating order, so no one always runs first and background load falls
on all alike; and a few untimed warm-up queries run first (first forward passes on new shapes are
slow). Cache-served latency (the same search repeated, as for page 2) is measured separately and
only when asked (`RunSettings.cached_latency`).
"""
from __future__ import annotations

import dataclasses
import platform
from typing import Any, Callable, Iterable, Sequence

from rescore_sidecar.tools.eval.collection import Collection
from rescore_sidecar.tools.eval.metrics import latency_summary, per_query_scores
from rescore_sidecar.tools.eval.report import Report, SystemRun
from rescore_sidecar.tools.eval.services import Engine

# Field the model reads: title and text once (Cranfield abstracts repeat the title).
PASSAGE_FIELD = "passage"
ENGINE_ORDER = "engine order (BM25)"

_POLICY_ALIASES = {"blend": "linear", "linear": "linear", "replace": "replace", "rrf": "rrf"}
_KEY_ALIASES = {"weight": "model_weight", "model_weight": "model_weight", "k": "rrf_k", "rrf_k": "rrf_k",
                "model": "model", "window": "window", "policy": "policy"}


@dataclasses.dataclass(frozen=True)
class RescoreConfig:
    """One rescoring configuration: `options` are `rerank=` overrides of `connectors.RerankOptions`."""
    label: str
    options: dict[str, Any]


def parse_config(spec: str, *, default_window: int = 50, default_model: str = "") -> RescoreConfig:
    """`policy=linear,weight=0.5,window=100,model=NAME,label=TEXT` -> RescoreConfig.

    Keys: model (a name the sidecar serves; default its default model), window (hits sent to the
    model, default 50), policy (replace | linear (alias blend) | rrf), weight (linear: weight of
    the model score, 0..1), rrf_k (rrf constant), label (the name in reports).
    """
    from rescore_sidecar.connectors.config import RerankOptions

    options: dict[str, Any] = {"window": default_window}
    label = ""
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value:
            raise ValueError(f"rescoring config {spec!r}: expected key=value, got {part!r}")
        if key == "label":
            label = value
            continue
        if key not in _KEY_ALIASES:
            raise ValueError(f"rescoring config {spec!r}: unknown key {key!r}; "
                             "use model, window, policy, weight, rrf_k, label")
        key = _KEY_ALIASES[key]
        try:
            if key in ("window", "rrf_k"):
                options[key] = int(value)
            elif key == "model_weight":
                options[key] = float(value)
            elif key == "policy":
                if value.lower() not in _POLICY_ALIASES:
                    raise ValueError(f"policy must be replace, linear (blend) or rrf, got {value!r}")
                options[key] = _POLICY_ALIASES[value.lower()]
            else:
                options[key] = value
        except ValueError as exc:
            raise ValueError(f"rescoring config {spec!r}: {key}: {exc}") from None
    try:
        resolved = RerankOptions().replace(options)  # validates ranges with the connector's own rules
    except ValueError as exc:
        raise ValueError(f"rescoring config {spec!r}: {exc}") from None
    return RescoreConfig(label or default_label(resolved, default_model), options)


def default_label(options, default_model: str = "") -> str:
    policy = {"linear": f"linear {options.model_weight:g}", "rrf": f"rrf k={options.rrf_k}"}.get(
        options.policy, options.policy)
    return f"{options.model or default_model or 'default model'} · window {options.window} · {policy}"


# ---------------------------------------------------------------- engine side

def index_collection(client: Any, engine: Engine, index: str, collection: Collection,
                     progress: Callable[[Iterable], Iterable] = lambda x: x) -> None:
    """(Re)creates `index` with BM25 over `title` and `text` and loads the corpus.

    The analyzer is `standard` with English stop words: it is built into every engine distribution
    (stemming analyzers live in the optional analysis-common module, absent from minimal installs).
    """
    settings = {"number_of_shards": 1, "number_of_replicas": 0,
                "analysis": {"analyzer": {"text_en": {"type": "standard", "stopwords": "_english_"}}}}
    mappings = {"properties": {
        "title": {"type": "text", "analyzer": "text_en"},
        "text": {"type": "text", "analyzer": "text_en"},
        PASSAGE_FIELD: {"type": "text", "index": False},
    }}
    if client.indices.exists(index=index):
        client.indices.delete(index=index)
    if engine.kind == "opensearch":
        from opensearchpy import helpers

        client.indices.create(index=index, body={"settings": settings, "mappings": mappings})
    else:
        from elasticsearch import helpers

        client.indices.create(index=index, settings=settings, mappings=mappings)
    actions = ({"_index": index, "_id": d.id, "_source": {"title": d.title, "text": d.text,
                                                          PASSAGE_FIELD: d.full_text()}}
               for d in progress(collection.documents.values()))
    ok, errors = helpers.bulk(client, actions, chunk_size=500, raise_on_error=False)
    if errors:
        raise RuntimeError(f"indexing {index}: {len(errors)} documents failed, first: {errors[0]}")
    client.indices.refresh(index=index)
    count = client.count(index=index)["count"]
    if count != len(collection.documents):
        raise RuntimeError(f"indexing {index}: {count} documents searchable, expected {len(collection.documents)}")


def bm25_body(query: str, depth: int) -> dict:
    return {"query": {"multi_match": {"query": query, "fields": ["title", "text"]}}, "size": depth,
            "_source": False}


def wrap(client: Any, engine: Engine, sidecar_address: str, budget_ms: float, *, bypass_cache: bool = True) -> Any:
    """The connector wrapper around `client`, patient enough that an evaluation never falls back
    for being slow (the budget and breaker are production knobs, not quality ones). `bypass_cache`:
    every sidecar call computes every pair (the latency measured is compute, not cache hits)."""
    from rescore_sidecar.connectors import BreakerConfig, ConnectorConfig, RerankOptions, SidecarClientConfig
    from rescore_sidecar.connectors import RescoringElasticsearch, RescoringOpenSearch

    config = ConnectorConfig(
        default=RerankOptions(fields=(PASSAGE_FIELD,)),
        sidecar=SidecarClientConfig(targets=(sidecar_address,), budget_ms=budget_ms, bypass_cache=bypass_cache,
                              breaker=BreakerConfig(slow_call_seconds=budget_ms / 1000, minimum_calls=1_000_000)))
    wrapper = RescoringOpenSearch if engine.kind == "opensearch" else RescoringElasticsearch
    return wrapper(client, config)


def _search(client: Any, index: str, body: dict, rerank: Any) -> dict:
    response = client.search(index=index, body=body, rerank=rerank)
    return response.body if hasattr(response, "body") else response


def ranked_ids(response: dict) -> list[str]:
    return [hit["_id"] for hit in response.get("hits", {}).get("hits", [])]


# ---------------------------------------------------------------- the run

@dataclasses.dataclass(frozen=True)
class RunSettings:
    index: str = "rescore-eval"
    depth: int = 100                # hits retrieved per query (the most any window can see)
    recall_k: int = 10
    budget_ms: float = 60_000.0     # sidecar budget per search during the evaluation
    reindex: bool = True
    warmup_queries: int = 3         # untimed rounds of every configuration before the timed ones
    cached_latency: bool = False    # also measure cache-served latency (reported apart, labelled)


def latency_method(settings: RunSettings, warmed: int) -> str:
    """The sentence every report carries about how its latency figures were taken."""
    text = (f"Added latency: the connector's `_rescore.took_ms` per search (engine answer to reordered response, "
            f"sidecar round trip included), with the sidecar's score cache bypassed (every pair computed), "
            f"configurations taking turns per query in rotating order, after {warmed} untimed warm-up "
            f"{'query' if warmed == 1 else 'queries'}.")
    if settings.cached_latency:
        text += (" Cache-served latency (reported apart): the same search repeated right after one that filled "
                 "the cache, as for page 2.")
    return text


def turns(configs: Sequence[RescoreConfig], round_index: int) -> list[RescoreConfig]:
    """The configurations in this query's order: rotated by one each query, so none always goes first."""
    if not configs:
        return []
    start = round_index % len(configs)
    return list(configs[start:]) + list(configs[:start])


def run_eval(collection: Collection, engine: Engine, sidecar_address: str, configs: Sequence[RescoreConfig],
             settings: RunSettings = RunSettings(), *, progress: Callable[..., Iterable] | None = None,
             context: dict | None = None, on_query: Callable[[str, dict[str, list[str]]], None] | None = None,
             log: Callable[[str], None] | None = None) -> Report:
    """Runs the evaluation and returns its report. `on_query(query_id, {system: ids})` sees each query's
    rankings; `log` gets a line per stage (indexing, warming the model, timed queries)."""
    log = log or (lambda _msg: None)
    progress = progress or (lambda it, **_: it)
    for c in configs:
        if int(c.options.get("window", 50)) > settings.depth:
            raise ValueError(f"{c.label}: window {c.options['window']} is larger than the retrieval depth "
                             f"{settings.depth}; raise --depth or lower the window")
    query_ids = collection.judged_queries()
    if not query_ids:
        raise ValueError(f"{collection.name}: no query has a relevant judgement; nothing to evaluate")
    client = engine.client()
    search = cached = None
    try:
        if settings.reindex:
            log(f"indexing {len(collection.documents)} documents into {settings.index} ...")
            index_collection(client, engine, settings.index, collection,
                             lambda it: progress(it, desc="indexing", total=len(collection.documents), unit="doc"))
        search = wrap(client, engine, sidecar_address, settings.budget_ms, bypass_cache=True)
        cached = wrap(client, engine, sidecar_address, settings.budget_ms, bypass_cache=False) \
            if settings.cached_latency else None
        rankings: dict[str, dict[str, list[str]]] = {ENGINE_ORDER: {}, **{c.label: {} for c in configs}}
        took: dict[str, list[float]] = {c.label: [] for c in configs}
        took_cached: dict[str, list[float]] = {c.label: [] for c in configs}
        fallbacks: dict[str, int] = {c.label: 0 for c in configs}
        warmup = query_ids[: max(settings.warmup_queries, 0)]
        if warmup:
            log(f"warming the model: {len(warmup)} untimed {'query' if len(warmup) == 1 else 'queries'} through "
                f"every configuration (first forward passes on new shapes are slow) ...")
        for i, q in enumerate(progress(warmup, desc="warm-up", unit="q")):
            for c in turns(configs, i):  # untimed: first forward passes on new shapes
                _search(search, settings.index, bm25_body(collection.queries[q], settings.depth),
                        {**c.options, "query": collection.queries[q]})
        log(f"timed queries: {len(query_ids)}, score cache bypassed, configurations taking turns ...")
        for i, q in enumerate(progress(query_ids, desc="queries", unit="q")):
            body = bm25_body(collection.queries[q], settings.depth)
            rankings[ENGINE_ORDER][q] = ranked_ids(_search(search, settings.index, body, False))
            for c in turns(configs, i):
                rerank = {**c.options, "query": collection.queries[q]}
                response = _search(search, settings.index, body, rerank)
                mark = response.get("_rescore", {})
                rankings[c.label][q] = ranked_ids(response)
                if mark.get("reranked"):
                    took[c.label].append(float(mark.get("took_ms", 0.0)))
                elif mark.get("fallback"):
                    fallbacks[c.label] += 1
                if cached is not None:
                    _search(cached, settings.index, body, rerank)  # fills the cache with this search's pairs
                    mark = _search(cached, settings.index, body, rerank).get("_rescore", {})
                    if mark.get("reranked"):
                        took_cached[c.label].append(float(mark.get("took_ms", 0.0)))
            if on_query:
                on_query(q, {name: r[q] for name, r in rankings.items()})
    finally:
        for wrapper in (search, cached):
            if wrapper is not None:
                wrapper.rescorer.close()  # the sidecar channels; the engine client is closed below
        client.close()
    metrics = ("ndcg@10", "mrr@10", f"recall@{settings.recall_k}")
    ceiling = per_query_scores(collection.qrels, rankings[ENGINE_ORDER], [f"recall@{settings.depth}"], query_ids)
    ceiling_mean = sum(ceiling[f"recall@{settings.depth}"].values()) / len(query_ids)
    baseline = SystemRun(ENGINE_ORDER, per_query_scores(collection.qrels, rankings[ENGINE_ORDER], metrics, query_ids))
    candidates = tuple(
        SystemRun(c.label, per_query_scores(collection.qrels, rankings[c.label], metrics, query_ids),
                  settings=c.options, latency=latency_summary(took[c.label]), fallbacks=fallbacks[c.label],
                  cached_latency=latency_summary(took_cached[c.label]) if settings.cached_latency else None)
        for c in configs)
    ctx = {"machine": machine_description(), **(context or {})}
    return Report(collection.name, collection.gain_note,
                  f"{engine.kind} {engine.version} (BM25 over title+text, standard analyzer + English stop words)",
                  settings.depth, metrics, baseline, candidates, ctx,
                  notes=(f"Recall@{settings.depth} of the retrieved hits (the same for every reordering): "
                         f"{ceiling_mean:.4f}.",),
                  latency_method=latency_method(settings, len(warmup)))


def machine_description() -> str:
    import os

    return f"{platform.node()} · {platform.machine()} · {os.cpu_count()} CPUs · Python {platform.python_version()}"
