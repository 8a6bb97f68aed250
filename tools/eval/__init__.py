"""Ranking-quality evaluation: engine order vs. rescored, on a test collection (`rescore-sidecar eval`).

Modules, in the order a run uses them: `collection` (readers: simple JSONL + TREC qrels, Cranfield),
`services` (engine and sidecar: given, or started for the run and stopped after), `runner` (index,
retrieve through the connector, rescore per configuration), `metrics` (ranx per query, paired
statistics), `report` (JSON, Markdown, PNG), `cli`; `sample` holds the slice the demo ships with.
"""
