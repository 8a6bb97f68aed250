# Generated from connectors/_async/wrappers.py by scripts/unasync.py: edit that file, then run the script.
"""Drop-in wrappers of opensearch-py / elasticsearch-py clients.

`search` and `msearch` gain two keywords, `rerank=` (None, bool, dict of `RerankOptions`
overrides) and `ab_key=` (user/session id for A/B arms); every other attribute is the wrapped
client's own, and responses are the client's own types with a top-level `_rescore` entry. The
request mapping is shared (`_core.engine_params`); only the calls differ between sync and async.
"""
from __future__ import annotations

from typing import Any, Sequence

from rescore_sidecar.connectors.rescoring import Rescorer
from rescore_sidecar.connectors._core.engine_params import es_kwargs, es_split, os_params
from rescore_sidecar.connectors.config import ConnectorConfig
from rescore_sidecar.connectors import tracing


def _traced(client: Any) -> Any:
    """The elasticsearch-py client carrying the current trace context as headers (`traceparent`),
    or itself when tracing is off."""
    extra = tracing.headers()
    return client.options(headers=extra) if extra else client


class _Wrapper:
    def __init__(self, client: Any, config: ConnectorConfig = ConnectorConfig(), *, rescorer: Any = None):
        self.client = client
        self.rescorer = rescorer or Rescorer(config)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def feedback(self, impression_id: str, clicked: Sequence[str]) -> Any:
        """What the user clicked in an experiment's impression (`response["_rescore"]["impression_id"]`,
        doc `_id`s): see `Rescorer.feedback`."""
        return self.rescorer.feedback(impression_id, clicked)

    def close(self) -> None:
        """Closes the sidecar channels and the wrapped client."""
        self.rescorer.close()
        self.client.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class RescoringOpenSearch(_Wrapper):
    """Wraps an `opensearchpy.AsyncOpenSearch`: `search`/`msearch` rerank, all else passes through."""

    def search(self, *, body: Any = None, index: Any = None, params: Any = None, headers: Any = None,
               rerank: Any = None, ab_key: str | None = None, **kwargs: Any) -> Any:
        def engine(b: dict, p: dict) -> Any:
            return self.client.search(body=b, index=index, params=p, headers=tracing.merged(headers))

        return self.rescorer.search(engine, body, os_params(params, kwargs), rerank=rerank, ab_key=ab_key)

    def msearch(self, *, body: Any, index: Any = None, params: Any = None, headers: Any = None,
                rerank: Any = None, ab_key: str | None = None, **kwargs: Any) -> Any:
        def engine(lines: list, p: dict) -> Any:
            return self.client.msearch(body=lines, index=index, params=p, headers=tracing.merged(headers))

        return self.rescorer.msearch(engine, body, os_params(params, kwargs), rerank=rerank, ab_key=ab_key)


class RescoringElasticsearch(_Wrapper):
    """Wraps an `elasticsearch.AsyncElasticsearch`: `search`/`msearch` rerank, all else passes through.
    Answers stay `ObjectApiResponse`s (their meta kept) with the reranked body."""

    def search(self, *, rerank: Any = None, ab_key: str | None = None, **kwargs: Any) -> Any:
        index, body, params, _ = es_split(kwargs)

        def engine(b: dict, p: dict) -> Any:
            return _traced(self.client).search(index=index, body=b, **es_kwargs(p))

        return self.rescorer.search(engine, body, params, rerank=rerank, ab_key=ab_key)

    def msearch(self, *, rerank: Any = None, ab_key: str | None = None, searches: Any = None,
                body: Any = None, **kwargs: Any) -> Any:
        def engine(lines: list, p: dict) -> Any:
            return _traced(self.client).msearch(searches=lines, **p)

        return self.rescorer.msearch(engine, searches if searches is not None else body, kwargs,
                                     rerank=rerank, ab_key=ab_key)
