"""The gRPC client of the sidecar: `client` (generated from `_async/client.py`), `calls` (one
request's budget, bookkeeping and retry policy), `errors` (typed reasons), `endpoints` (address
choice, breakers), `pool` (per-address health), `dns` (targets), `breaker`, `channels`, `concurrency`."""
