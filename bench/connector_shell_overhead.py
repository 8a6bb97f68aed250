"""Side by side, one process (run: .venv/bin/python bench/connector_shell_overhead.py): the connector's time per search through the new sans-I/O shell
(Rescorer.search -> search_steps + drive) vs the old direct orchestration (main@679ed30's
Rescorer.search body, same plan/collect/finish functions). Alternating rounds; medians."""
import os, platform, statistics, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from connector_overhead import PreparedSidecar, response
from rescore_sidecar.connectors.config import ConnectorConfig, RerankOptions
from rescore_sidecar.connectors.rescoring import Rescorer
from rescore_sidecar.connectors._core.steps import collect, finish, plan
from rescore_sidecar.connectors._sidecar.errors import SidecarUnavailable

def old_search(self, engine_search, body=None, params=None, *, rerank=None, ab_key=None):
    p, arm = plan(self.config, body, params, rerank, ab_key)
    response = engine_search(p.body, p.params)
    started = time.perf_counter()
    docs = collect(response, p)
    result = None; sidecar_ms = 0.0
    if docs:
        t0 = time.perf_counter()
        try:
            result = self.sidecar.rerank(p.query_text, [t for _, t in docs], model=p.options.model)
        except SidecarUnavailable as exc:
            result = exc
        sidecar_ms = (time.perf_counter() - t0) * 1000
    return finish(response, p, arm, docs, result, sidecar_ms, started)

n = 100
config = ConnectorConfig(default=RerankOptions(window=n, fields=("title", "body")))
rescorer = Rescorer(config, sidecar=PreparedSidecar())
prepared = response(n)
body = {"query": {"match": {"body": "lorem"}}, "size": 10}
engine = lambda b, p: prepared
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
print(f"machine: {cpu} cpus={os.cpu_count()} "
      f"python={platform.python_version()} {platform.platform()}")
samples = {"old direct": [], "new steps": []}
for _ in range(200):
    old_search(rescorer, engine, body, {}); rescorer.search(engine, body, {})
for rnd in range(20):
    for name, fn in (("old direct", lambda: old_search(rescorer, engine, body, {})), ("new steps", lambda: rescorer.search(engine, body, {}))):
        for _ in range(100):
            t0 = time.perf_counter(); fn(); samples[name].append((time.perf_counter() - t0) * 1000)
old, new = statistics.median(samples["old direct"]), statistics.median(samples["new steps"])
print(f"{'shell':<12} {'p50 ms':>8}\n{'old direct':<12} {old:8.3f}\n{'new steps':<12} {new:8.3f}\nratio new/old {new/old:.3f} (100 hits, replace, full _source, 2000 searches each, alternating rounds)")
