"""rescore-sidecar: a gRPC cross-encoder reranking server.

Importing this package is cheap (no torch). The generated gRPC stubs live apart, in
``rescore_sidecar.proto.rescore.v1``, so connectors import them without the server's stack.
"""

__version__ = "0.1.0"
