"""The README's GPU benchmark command (`bench/sidecar_throughput.py --arch xlmr-large`, the bge-reranker-v2-m3
shape) runs end to end on CPU at test size (`--smoke`): the XLM-R fixture crashed it before (issue 26)."""
from __future__ import annotations

import pathlib
import random
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORDS = ("boundary layer flow wing pressure supersonic heat transfer shock wave drag lift panel buckling "
         "cylinder laminar turbulent jet nozzle slender body hypersonic viscous").split()


def write_cranfield(folder: pathlib.Path, documents: int = 40, queries: int = 4) -> pathlib.Path:
    """A stand-in for the Cranfield files (same record format), so the test needs no data set."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)

    def records(count: int, words: int) -> str:
        return "".join(f".I {i + 1}\n.W\n{' '.join(rng.choice(WORDS) for _ in range(words))}\n" for i in range(count))

    (folder / "cran.all.1400").write_text(records(documents, 200))
    (folder / "cran.qry").write_text(records(queries, 6))
    return folder


def test_readme_gpu_command_runs_on_cpu_at_test_size(tmp_path):
    command = [sys.executable, str(ROOT / "bench" / "sidecar_throughput.py"), "--data",
               str(write_cranfield(tmp_path / "cranfield")), "--device", "cpu", "--arch", "xlmr-large", "--smoke",
               "--configs", "torch:bf16", "--baseline-dtype", "bfloat16", "--doc-tokens", "480", "510",
               "--peers", "none", "--requests", "2", "--rounds", "1", "--docs", "4", "--clients", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| rescore-sidecar torch")]
    assert len(rows) == 2 and all(float(row.split("|")[4]) > 0 for row in rows), done.stdout
    assert "xlmr-large (--smoke: test size)" in done.stdout
