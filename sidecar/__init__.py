"""rescore-sidecar: a gRPC cross-encoder reranking server.

Importing this package is cheap (no torch): connectors import the generated
stubs from ``sidecar.pb`` without pulling in the model stack.
"""

__version__ = "0.1.0"
