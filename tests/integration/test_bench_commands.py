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


def test_gpu_bench_smoke_writes_the_whole_table_on_cpu(tmp_path):
    """bench/gpu.py --smoke: every section of the GPU table at test size; fp8 rows say why CPU refuses it;
    --profile leaves a sidecar's torch.profiler trace and op table per shape and prints the table."""
    command = [sys.executable, str(ROOT / "bench" / "gpu.py"), "--smoke", "--requests", "2", "--clients", "1", "2",
               "--data", str(tmp_path), "--profile", str(tmp_path / "prof")]  # no Cranfield there: generated text
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    table = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    rows = [[cell.strip() for cell in row] for row in table[1:]]
    assert rows[0][0] == "peak" and float(rows[0][9].split()[0]) > 0
    for shape in ("bge-m3", "minilm"):
        serve = [r for r in rows if r[0] == "serve" and r[1].startswith(shape)]
        measured = {(r[2], r[3], r[4]) for r in serve if r[5] and float(r[5]) > 0}
        assert {("sidecar bf16", c, d) for c in ("1", "2") for d in ("8", "4")} <= measured
        assert ("CrossEncoder.predict(32) bf16", "1", "8") in measured
        assert any("mixed" in r[1] for r in serve)
        assert all("refused: precision fp8 needs a CUDA GPU" in r[9] for r in serve if "fp8" in r[2])
        assert len([r for r in rows if r[0] == "alone" and r[1].startswith(shape) and r[5]]) == 2
    assert "texts: generated words" in done.stdout and "MiniLM shape:" in done.stdout
    for shape in ("bge-m3", "minilm"):
        ops = tmp_path / "prof" / shape / "bf16.ops.txt"
        assert ops.read_text().startswith("model bf16: ") and "aten::addmm" in ops.read_text()
        assert (tmp_path / "prof" / shape / "bf16.trace.json").stat().st_size > 0
        assert f"{ops}:\nmodel bf16: " in done.stdout
