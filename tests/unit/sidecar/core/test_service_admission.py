"""Admission control: a request the queue cannot take is refused before the tokenizer sees it."""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses

import pytest

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.sidecar.backends import TokenizedSequence
from rescore_sidecar.sidecar.core.queue import BatchLimits, Job, ModelQueue
from rescore_sidecar.sidecar.config import SidecarConfig
from rescore_sidecar.sidecar.core.errors import LimitExceeded
from rescore_sidecar.sidecar.core.service import RerankService


class CountingTokenizer:
    """Any use of the tokenizer is counted (and fails: these requests must never reach it)."""

    def __init__(self) -> None:
        self.uses = 0

    def __getattr__(self, name):
        self.uses += 1
        raise AssertionError(f"tokenizer.{name} used")


@dataclasses.dataclass
class FakeModel:
    tokenizer: CountingTokenizer
    name: str = "m"
    source: str = "m"
    kind: str = "cross-encoder"
    dtype_name: str = "float32"


def _request(docs: int) -> pb.RerankRequest:
    return pb.RerankRequest(query="q", documents=[pb.Document(text=f"d{i}") for i in range(docs)])


@pytest.mark.parametrize("queued, docs, message", [(0, 11, "the limit is 10"), (8, 3, "retry later")])
def test_a_request_the_queue_cannot_take_never_reaches_the_tokenizer(queued, docs, message):
    async def scenario():
        model = FakeModel(CountingTokenizer())
        pool = concurrent.futures.ThreadPoolExecutor(1)
        queue = ModelQueue(model, pool, BatchLimits(max_queue_pairs=10))  # not started: nothing drains it
        if queued:
            queue.submit(Job([TokenizedSequence([1, 2], None)] * queued, None, asyncio.get_running_loop().create_future()))
        service = RerankService(SidecarConfig(), {"m": model}, {"m": queue}, pool, "m")
        try:
            with pytest.raises(LimitExceeded, match=message):
                await service.rerank(_request(docs))
        finally:
            pool.shutdown()
        assert model.tokenizer.uses == 0
        assert service.in_flight == 0

    asyncio.run(scenario())
