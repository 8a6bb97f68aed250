"""A scripted sidecar for unit tests, no network, no model: `MockSidecar`, like httpx's MockTransport.

It stands in for the gRPC channel under the real clients, so budget, retry, breaker and the
classification of errors run exactly as in production:

    from rescore_sidecar.connectors import ConnectorConfig, Rescorer, SidecarClient, SidecarClientConfig
    from rescore_sidecar.connectors.testing import Fault, MockSidecar

    mock = MockSidecar.script([0.1, 0.9], Fault.unavailable(), Fault.too_large())
    config = ConnectorConfig(sidecar=SidecarClientConfig(targets=("a:1",)))
    rescorer = Rescorer(config, sidecar=SidecarClient(config.sidecar, transport=mock))

A handler `(address, query, texts) -> outcome` decides each call; an outcome is a list of
scores (one per text), a `Fault` (a gRPC error as the sidecar sends it, typed reason included),
or a `Delay` before either. `mock.calls` records every call. The async client takes the same object.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import threading
import time
from typing import Any, Callable, Sequence, Union

import grpc
from google.rpc import error_details_pb2, status_pb2

from rescore_sidecar.connectors._sidecar.errors import DOMAIN
from rescore_sidecar.proto.rescore.v1 import rescore_pb2

__all__ = ["Delay", "Fault", "MockCall", "MockSidecar", "word_overlap"]


@dataclasses.dataclass(frozen=True)
class Fault:
    """A failed call: gRPC `code`, `message`, and the sidecar's typed `reason` (None: no ErrorInfo,
    as from gRPC's own transport or another server)."""

    code: grpc.StatusCode
    message: str = ""
    reason: str | None = None

    @classmethod
    def unavailable(cls) -> Fault:  # a replica down or still loading
        return cls(grpc.StatusCode.UNAVAILABLE, "connection refused", None)

    @classmethod
    def overloaded(cls) -> Fault:  # queue full: the sidecar's load
        return cls(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full, retry later", "OVERLOADED")

    @classmethod
    def too_large(cls) -> Fault:  # over a per-request limit: the request's fault
        return cls(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many documents; the limit is 1", "REQUEST_TOO_LARGE")

    @classmethod
    def invalid(cls) -> Fault:
        return cls(grpc.StatusCode.INVALID_ARGUMENT, "query is empty", "INVALID_REQUEST")

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        if self.reason is None:
            return ()
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        status.details.add().Pack(error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN))
        return (("grpc-status-details-bin", status.SerializeToString()),)


@dataclasses.dataclass(frozen=True)
class Delay:
    """Wait `seconds` (cut at the call's timeout: DEADLINE_EXCEEDED), then give `then`."""

    seconds: float
    then: Any = None  # scores or Fault; None: the default handler's scores


Outcome = Union[Sequence[float], Fault, Delay]
Handler = Callable[[str, str, list[str]], Outcome]


@dataclasses.dataclass(frozen=True)
class MockCall:
    address: str
    query: str
    texts: list[str]
    model: str
    timeout: float | None
    bypass_cache: bool = False  # what the request asked of the sidecar's score cache
    metadata: tuple = ()  # the call's gRPC metadata (authorization, traceparent, ...) as sent


class MockRpcError(grpc.RpcError):
    """What a real channel raises: code, details and the status trailers."""

    def __init__(self, fault: Fault):
        super().__init__(fault.message)
        self._fault = fault

    def code(self) -> grpc.StatusCode:
        return self._fault.code

    def details(self) -> str:
        return self._fault.message

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._fault.trailing_metadata()


def word_overlap(address: str, query: str, texts: list[str]) -> list[float]:
    """The default handler: a text scores the number of the query's words it contains."""
    words = set(query.lower().split())
    return [float(len(words & set(t.lower().split()))) for t in texts]


class MockSidecar:
    """Transport for `SidecarClient(..., transport=)` / `AsyncSidecarClient(..., transport=)`."""

    def __init__(self, handler: Handler = word_overlap, *, model: str = "mock-model", queue_ms: float = 0.0):
        """`queue_ms`: the queue wait every reply reports (`timings.queue_ms`; settable any time), so
        a test can press the brownout window without slow calls."""
        self.handler = handler
        self.model = model
        self.queue_ms = queue_ms
        self.calls: list[MockCall] = []
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    @classmethod
    def script(cls, *outcomes: Outcome, model: str = "mock-model") -> MockSidecar:
        """Answers the calls in turn with `outcomes`; the last one repeats."""
        queue = collections.deque(outcomes)
        lock = threading.Lock()

        def handler(address: str, query: str, texts: list[str]) -> Outcome:
            with lock:
                return queue.popleft() if len(queue) > 1 else queue[0]

        return cls(handler, model=model)

    # -- what the outcome means for one call
    def _decide(self, address: str, request: rescore_pb2.RerankRequest, timeout: float | None,
                metadata: Any = None) -> tuple[float, Any]:
        texts = [d.text for d in request.documents]
        with self._lock:
            self.calls.append(MockCall(address, request.query, texts, request.model, timeout, request.bypass_cache,
                                       tuple(metadata or ())))
        outcome = self.handler(address, request.query, texts)
        delay = 0.0
        if isinstance(outcome, Delay):
            delay, outcome = outcome.seconds, outcome.then
            if outcome is None:
                outcome = word_overlap(address, request.query, texts)
        if timeout is not None and delay > timeout:
            return timeout, Fault(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        return delay, outcome

    def _reply(self, request: rescore_pb2.RerankRequest, outcome: Any) -> rescore_pb2.RerankResponse:
        if isinstance(outcome, Fault):
            raise MockRpcError(outcome)
        results = [rescore_pb2.Result(index=i, score=float(s)) for i, s in enumerate(outcome)]
        return rescore_pb2.RerankResponse(results=results, model=request.model or self.model,
                                          timings=rescore_pb2.Timings(queue_ms=self.queue_ms))

    def _call_sync(self, address: str, request: rescore_pb2.RerankRequest, timeout: float | None = None,
                   metadata: Any = None) -> rescore_pb2.RerankResponse:
        delay, outcome = self._decide(address, request, timeout, metadata)
        if delay:
            time.sleep(delay)
        return self._reply(request, outcome)

    async def _call_async(self, address: str, request: rescore_pb2.RerankRequest, timeout: float | None = None,
                          metadata: Any = None) -> rescore_pb2.RerankResponse:
        delay, outcome = self._decide(address, request, timeout, metadata)
        if delay:
            await asyncio.sleep(delay)
        return self._reply(request, outcome)

    def stub(self, address: str) -> Any:
        """A stand-in for `RerankerStub(channel)` of the sync client."""
        mock = self

        class _Rerank:
            def __call__(self, request: Any, timeout: float | None = None, metadata: Any = None) -> Any:
                return mock._call_sync(address, request, timeout, metadata)

            def future(self, request: Any, timeout: float | None = None, metadata: Any = None) -> Any:
                with mock._lock:
                    mock._pool = mock._pool or concurrent.futures.ThreadPoolExecutor(8, "mock-sidecar")
                return mock._pool.submit(mock._call_sync, address, request, timeout, metadata)

        return type("MockStub", (), {"Rerank": _Rerank()})()

    def async_stub(self, address: str) -> Any:
        """A stand-in for `RerankerStub(aio channel)` of the async client."""
        mock = self

        class _Rerank:
            def __call__(self, request: Any, timeout: float | None = None, metadata: Any = None) -> Any:
                return mock._call_async(address, request, timeout, metadata)

        return type("MockAsyncStub", (), {"Rerank": _Rerank()})()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
