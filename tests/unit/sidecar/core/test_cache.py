"""The score cache on its own: keys, LRU bound, plans and in-flight sharing."""
from __future__ import annotations

import asyncio
import dataclasses

import numpy as np

from rescore_sidecar.sidecar.core.cache import ENTRY_OVERHEAD, ScoreCache, keys, model_namespace


@dataclasses.dataclass
class Seq:
    ids: list[int]
    type_ids: list[int] | None = None


@dataclasses.dataclass
class Model:
    name: str = "m"
    source: str = "/models/m"
    kind: str = "cross-encoder"
    dtype_name: str = "float32"


@dataclasses.dataclass(eq=False)
class FakeJob:
    future: asyncio.Future
    rows: list


def test_keys_depend_on_every_id_type_id_and_the_model():
    ns = model_namespace(Model())
    base = keys(ns, [Seq([101, 7, 102])])[0]
    assert keys(ns, [Seq([101, 7, 102])])[0] == base
    assert keys(ns, [Seq([101, 8, 102])])[0] != base
    assert keys(ns, [Seq([101, 7])])[0] != base  # a cut sequence is another key
    assert keys(ns, [Seq([101, 7, 102], [0, 1, 1])])[0] != base
    assert keys(ns, [Seq([101, 7, 102], [0, 0, 1])])[0] != keys(ns, [Seq([101, 7, 102], [0, 1, 1])])[0]
    assert keys(model_namespace(Model(name="other")), [Seq([101, 7, 102])])[0] != base
    assert keys(model_namespace(Model(dtype_name="bfloat16")), [Seq([101, 7, 102])])[0] != base


def test_runtime_and_precision_attributes_win_over_dtype_name():
    plain = model_namespace(Model())
    onnx = Model()
    onnx.runtime, onnx.precision = "onnx", "int8"  # type: ignore[attr-defined]
    assert model_namespace(onnx) != plain
    assert b"onnx" in model_namespace(onnx) and b"int8" in model_namespace(onnx)


def test_rows_round_trip_exactly():
    cache = ScoreCache(1 << 20)
    row = np.array([0.1, -2.5, 3.75e-8], dtype=np.float32)
    cache.put(b"k" * 16, row)
    assert np.array_equal(cache.get(b"k" * 16), row)
    assert cache.get(b"x" * 16) is None


def test_stays_within_its_size_and_evicts_least_recently_used():
    row = np.zeros(8, dtype=np.float32)
    per_entry = row.nbytes + ENTRY_OVERHEAD
    cache = ScoreCache(per_entry * 10)
    for n in range(10):
        cache.put(n.to_bytes(16, "big"), row)
    cache.get((0).to_bytes(16, "big"))  # 0 is now the most recently used
    for n in range(10, 1000):
        cache.put(n.to_bytes(16, "big"), row)
        assert cache.bytes <= cache.max_bytes
        if n == 10:
            assert cache.get((0).to_bytes(16, "big")) is not None
            assert cache.get((1).to_bytes(16, "big")) is None
    assert len(cache) == 10
    assert cache.bytes == 10 * per_entry


def test_an_entry_larger_than_the_cache_is_not_stored():
    cache = ScoreCache(ENTRY_OVERHEAD + 8)
    cache.put(b"a" * 16, np.zeros(100, dtype=np.float32))
    assert len(cache) == 0 and cache.bytes == 0


def test_plan_splits_hits_duplicates_and_misses():
    cache = ScoreCache(1 << 20)
    cache.put(b"hit" + bytes(13), np.array([1.0], dtype=np.float32))
    request = [b"hit" + bytes(13), b"new" + bytes(13), b"new" + bytes(13), b"two" + bytes(13)]
    plan = cache.plan("m", request)
    assert plan.rows[0] is not None and plan.rows[0][0] == 1.0
    assert plan.compute == [1, 3]
    assert plan.copies == [(2, 1)]
    assert plan.joins == []


def test_a_second_request_joins_the_first_requests_job_and_rows_are_stored_when_it_finishes():
    async def scenario():
        cache = ScoreCache(1 << 20)
        loop = asyncio.get_running_loop()
        key_a, key_b = b"a" * 16, b"b" * 16
        first = cache.plan("m", [key_a, key_b])
        job = FakeJob(loop.create_future(), [None, None])
        cache.register([key_a, key_b], job)
        second = cache.plan("m", [key_b, key_a])
        assert second.compute == []
        assert [(slot, index) for slot, j, index in second.joins] == [(0, 1), (1, 0)]
        assert all(j is job for _, j, _ in second.joins)
        job.rows = [np.array([0.5], np.float32), np.array([0.25], np.float32)]
        job.future.set_result(job.rows)
        await asyncio.sleep(0)  # done callbacks run on the next loop turn
        assert cache.in_flight == {}
        assert cache.get(key_b)[0] == 0.25
        third = cache.plan("m", [key_a, key_b])
        assert third.compute == [] and third.joins == []
        return first

    first = asyncio.run(scenario())
    assert first.compute == [0, 1]


def test_a_failed_or_cancelled_job_is_not_joined_and_stores_nothing():
    async def scenario():
        cache = ScoreCache(1 << 20)
        loop = asyncio.get_running_loop()
        job = FakeJob(loop.create_future(), [None])
        cache.register([b"a" * 16], job)
        job.future.cancel()
        assert cache.plan("m", [b"a" * 16]).compute == [0]  # not joined, computed again
        await asyncio.sleep(0)
        assert cache.in_flight == {} and len(cache) == 0

    asyncio.run(scenario())
