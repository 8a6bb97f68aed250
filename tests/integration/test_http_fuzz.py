"""schemathesis against a live sidecar and proxy, driven by the OpenAPI documents they serve
(issue #24): a bounded number of generated requests per route, no 5xx (504 for a deadline the
client chose too short is the documented answer), no hang, every answer conforming to the document,
and the server still serving a valid request afterwards."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import httpx
import pytest

from rescore_sidecar.tools.proxy_process import proxy_process
from rescore_sidecar.tools.sidecar_process import sidecar_process

pytestmark = pytest.mark.integration
pytest.importorskip("schemathesis")

CONFIG = pathlib.Path(__file__).with_name("schemathesis.toml")
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "positive_data_acceptance,negative_data_rejection")
# Per route; CI runs each of coverage and fuzzing phases with it. RESCORE_FUZZ_EXAMPLES raises it locally.
EXAMPLES = int(os.environ.get("RESCORE_FUZZ_EXAMPLES", "25"))
# A fixed seed, so a commit that passed passes again (a random one failed CI on a case it drew once);
# RESCORE_FUZZ_SEED=random explores, and the seed it drew is printed with the summary to replay it.
SEED = os.environ.get("RESCORE_FUZZ_SEED", "20261206")


def schemathesis(url: str, *extra: str) -> tuple[int, str, float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run", url,
         "--max-examples", str(EXAMPLES), "--checks", CHECKS, "--request-timeout", "10", "--workers", "1",
         "--phases", "coverage,fuzzing", "--no-shrink", "--output-truncate", "true",
         *([] if SEED == "random" else ["--seed", SEED]), *extra],
        capture_output=True, text=True, timeout=240, env={**os.environ, "NO_COLOR": "1"})
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


def test_sidecar_http_api_survives_fuzzing(tiny_cross_encoder):
    extra = ["--max-documents", "16", "--max-request-bytes", "20000", "--auth-token", "fuzz-token"]
    with sidecar_process({"ce": tiny_cross_encoder}, http_port=0, extra_args=extra) as sidecar:
        code, output, seconds = schemathesis(sidecar.http_url + "/openapi.json", "-H", "Authorization: Bearer fuzz-token")
        print(f"schemathesis on the sidecar: {seconds:.1f}s\n{output[-3000:]}")
        assert code == 0, output[-6000:]
        assert sidecar.process.poll() is None and sidecar.serving(), sidecar.log_tail()
        reply = httpx.post(sidecar.http_url + "/v2/rerank", headers={"Authorization": "Bearer fuzz-token"},
                           json={"query": "wing", "documents": ["wing flutter", "jet noise"]}, timeout=30)
        assert reply.status_code == 200 and len(reply.json()["results"]) == 2


def test_proxy_own_endpoints_survive_fuzzing():
    # The proxy's own endpoints answer without an engine; the upstream is never contacted.
    with proxy_process("http://127.0.0.1:9") as proxy:
        code, output, seconds = schemathesis(proxy.url + "/_rescore/openapi.json")
        print(f"schemathesis on the proxy: {seconds:.1f}s\n{output[-2000:]}")
        assert code == 0, output[-6000:]
        assert httpx.get(proxy.url + "/_rescore/health", timeout=10).json()["status"] == "ok"
