"""Operator and developer tools shipped with rescore-sidecar, not part of the client library:
the `rescore-sidecar` command line, evaluation (`eval`), the demo, local engine nodes
(`localnode`), seeded test models and sidecar/proxy subprocess harnesses for tests and benchmarks."""
