"""The connectors' logic without I/O: pure functions over JSON-like search bodies and answers.

`plan` (what to ask the engine), `text` (what the model reads), `fuse` (scores by policy),
`shape` (the caller's response), `arms` (which options a request runs with), `steps` (one search
as a generator of effects that the sync and async shells and the proxy carry out).
"""
