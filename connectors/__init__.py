"""Client-side rescoring: wrap an opensearch-py / elasticsearch-py client and get reranked hits.

    from connectors import RescoringOpenSearch, ConnectorConfig, SidecarClientConfig
    client = RescoringOpenSearch(OpenSearch(url), ConnectorConfig(sidecar=SidecarClientConfig(targets=("127.0.0.1:50051",))))
    client.search(index="docs", body={"query": {"match": {"text": "q"}}}, rerank={"window": 100})
"""
from connectors.config import Arm, BreakerConfig, ConnectorConfig, RerankOptions, SidecarClientConfig
from connectors.rescoring import Rescorer
from connectors.rescoring_async import AsyncRescorer
from connectors.sidecar_client import RerankResult, SidecarClient, SidecarUnavailable
from connectors.sidecar_client_async import AsyncSidecarClient
from connectors.wrappers import RescoringElasticsearch, RescoringOpenSearch
from connectors.wrappers_async import AsyncRescoringElasticsearch, AsyncRescoringOpenSearch

__all__ = [
    "Arm", "AsyncRescorer", "AsyncRescoringElasticsearch", "AsyncRescoringOpenSearch", "AsyncSidecarClient",
    "BreakerConfig", "ConnectorConfig", "RerankOptions", "RerankResult", "Rescorer", "RescoringElasticsearch",
    "RescoringOpenSearch", "SidecarClient", "SidecarClientConfig", "SidecarUnavailable",
]
