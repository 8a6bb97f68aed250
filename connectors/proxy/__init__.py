"""HTTP reverse proxy in front of Elasticsearch/OpenSearch that reranks searches through the sidecar.

`rescore-sidecar proxy --upstream http://localhost:9200 --sidecar localhost:50051` and point
clients at :9201. Everything that is not a search passes through unchanged; see docs/proxy.md.
"""
