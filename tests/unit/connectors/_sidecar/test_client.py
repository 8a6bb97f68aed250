"""The sync and async sidecar clients over `MockSidecar`: results, retry, breaker, typed reasons.

Every test runs against both shells (`client` fixture), so the two cannot drift."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from rescore_sidecar.connectors import (AsyncSidecarClient, BreakerConfig, RequestRejected, SidecarClient,
                                        SidecarClientConfig, SidecarOverloaded, SidecarUnavailable)
from rescore_sidecar.connectors.testing import Delay, Fault, MockSidecar

BREAKER = BreakerConfig(window_size=4, minimum_calls=4, failure_rate=0.5, open_seconds=60)


class Shell:
    """Calls either client the same way from a sync test."""

    def __init__(self, kind: str, config: SidecarClientConfig, mock: MockSidecar):
        self.kind, self.mock = kind, mock
        cls = SidecarClient if kind == "sync" else AsyncSidecarClient
        self.client = cls(config, transport=mock)

    def rerank(self, query, texts, **kw):
        if self.kind == "sync":
            return self.client.rerank(query, texts, **kw)
        return asyncio.run(self.client.rerank(query, texts, **kw))

    def rerank_many(self, calls, **kw):
        if self.kind == "sync":
            return self.client.rerank_many(calls, **kw)
        return asyncio.run(self.client.rerank_many(calls, **kw))

    def state(self, address):
        return self.client.endpoints.breakers[address].state


@pytest.fixture(params=["sync", "async"])
def make(request):
    made = []

    def factory(mock, targets=("a:1",), **config):
        shell = Shell(request.param, SidecarClientConfig(targets=targets, breaker=BREAKER, **config), mock)
        made.append(shell)
        return shell

    yield factory
    for shell in made:
        shell.mock.close()


def test_scores_come_back_by_position(make):
    shell = make(MockSidecar())
    result = shell.rerank("red fox", ["a red fox", "blue", "fox"], model="m")
    assert result.scores == [2.0, 0.0, 1.0]
    assert result.model == "m"
    assert [c.texts for c in shell.mock.calls] == [["a red fox", "blue", "fox"]]


def test_bypass_cache_is_sent_only_when_asked_and_on_every_call(make):
    shell = make(MockSidecar())
    shell.rerank("q", ["x"])
    shell.rerank("q", ["x"], bypass_cache=True)
    shell.rerank_many([("q", ["x"], ""), ("r", ["y"], "")], bypass_cache=True)
    assert [c.bypass_cache for c in shell.mock.calls] == [False, True, True, True]


def test_bypass_cache_from_the_client_config_and_overridden_per_call(make):
    shell = make(MockSidecar(), bypass_cache=True)
    shell.rerank("q", ["x"])
    shell.rerank("q", ["x"], bypass_cache=False)
    assert [c.bypass_cache for c in shell.mock.calls] == [True, False]


def test_unavailable_is_retried_once_on_another_endpoint(make):
    shell = make(MockSidecar.script(Fault.unavailable(), [1.0]), targets=("a:1", "b:2"))
    assert shell.rerank("q", ["x"]).scores == [1.0]
    first, second = shell.mock.calls
    assert first.address != second.address


def test_only_one_retry(make):
    shell = make(MockSidecar.script(Fault.unavailable()), targets=("a:1", "b:2"))
    with pytest.raises(SidecarUnavailable) as info:
        shell.rerank("q", ["x"])
    assert info.value.reason == "unavailable"
    assert len(shell.mock.calls) == 2


def test_no_retry_when_disabled_or_budget_too_small(make):
    shell = make(MockSidecar.script(Fault.unavailable()), retry=False)
    with pytest.raises(SidecarUnavailable):
        shell.rerank("q", ["x"])
    assert len(shell.mock.calls) == 1
    shell = make(MockSidecar.script(Fault.unavailable()), budget_ms=50, min_retry_budget_ms=10_000)
    with pytest.raises(SidecarUnavailable):
        shell.rerank("q", ["x"])
    assert len(shell.mock.calls) == 1


def test_too_large_is_the_requests_fault_and_spares_the_breaker(make):
    shell = make(MockSidecar.script(Fault.too_large()))
    for _ in range(10):
        with pytest.raises(RequestRejected) as info:
            shell.rerank("q", ["x"])
        assert info.value.reason == "too_large"
    assert shell.state("a:1") == "closed"
    assert len(shell.mock.calls) == 10  # never retried


def test_overload_counts_against_the_breaker(make):
    shell = make(MockSidecar.script(Fault.overloaded()))
    for _ in range(4):
        with pytest.raises(SidecarOverloaded) as info:
            shell.rerank("q", ["x"])
        assert info.value.reason == "overloaded"
    assert shell.state("a:1") == "open"
    with pytest.raises(SidecarUnavailable) as info:
        shell.rerank("q", ["x"])
    assert info.value.reason == "breaker_open"
    assert len(shell.mock.calls) == 4  # the open breaker sends nothing


def test_the_reason_decides_never_the_message(make):
    # The wording of a per-request limit, but the typed reason says overload: overload it is.
    worded = Fault(grpc.StatusCode.RESOURCE_EXHAUSTED, "the limit is 5", "OVERLOADED")
    with pytest.raises(SidecarOverloaded):
        make(MockSidecar.script(worded)).rerank("q", ["x"])
    # A reason without the wording: still the request's fault.
    plain = Fault(grpc.StatusCode.RESOURCE_EXHAUSTED, "no", "REQUEST_TOO_LARGE")
    with pytest.raises(RequestRejected):
        make(MockSidecar.script(plain)).rerank("q", ["x"])


def test_resource_exhausted_without_error_info_is_grpc_size_limit(make):
    bare = Fault(grpc.StatusCode.RESOURCE_EXHAUSTED, "Sent message larger than max", None)
    with pytest.raises(RequestRejected) as info:
        make(MockSidecar.script(bare)).rerank("q", ["x"])
    assert info.value.reason == "too_large"


@pytest.mark.parametrize("fault,reason,cls", [
    (Fault.invalid(), "error", RequestRejected),
    (Fault(grpc.StatusCode.UNAUTHENTICATED, "no token"), "unauthenticated", SidecarUnavailable),
    (Fault(grpc.StatusCode.INTERNAL, "boom", "INTERNAL"), "error", SidecarUnavailable),
    (Fault(grpc.StatusCode.UNAVAILABLE, "loading", "NOT_READY"), "unavailable", SidecarUnavailable),
])
def test_other_faults(make, fault, reason, cls):
    with pytest.raises(cls) as info:
        make(MockSidecar.script(fault), retry=False).rerank("q", ["x"])
    assert info.value.reason == reason
    assert type(info.value) is cls


def test_slow_sidecar_times_out_within_budget(make):
    shell = make(MockSidecar.script(Delay(5.0)), budget_ms=50)
    with pytest.raises(SidecarUnavailable) as info:
        shell.rerank("q", ["x"])
    assert info.value.reason == "timeout"
    assert shell.mock.calls[0].timeout <= 0.05


def test_short_reply_is_an_error(make):
    with pytest.raises(SidecarUnavailable) as info:
        make(MockSidecar.script([1.0])).rerank("q", ["x", "y"])
    assert info.value.reason == "error"


def test_rerank_many_retries_by_the_same_rule(make):
    outcomes = {"down": [Fault.unavailable(), [3.0]], "big": [Fault.too_large()], "ok": [[1.0]]}

    def handler(address, query, texts):
        queue = outcomes[query]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    shell = make(MockSidecar(handler), targets=("a:1", "b:2"))
    results = shell.rerank_many([("down", ["x"], ""), ("big", ["x"], ""), ("ok", ["x"], "")])
    assert results[0].scores == [3.0]
    assert isinstance(results[1], RequestRejected) and results[1].reason == "too_large"
    assert results[2].scores == [1.0]
    assert [c.query for c in shell.mock.calls].count("down") == 2
    assert [c.query for c in shell.mock.calls].count("big") == 1


def test_close_and_context_managers():
    mock = MockSidecar()
    with SidecarClient(SidecarClientConfig(targets=("a:1",)), transport=mock) as client:
        assert client.rerank("a", ["a"]).scores == [1.0]
    client.close()  # twice is fine

    async def run():
        async with AsyncSidecarClient(SidecarClientConfig(targets=("a:1",)), transport=mock) as client:
            return (await client.rerank("a", ["a"])).scores

    assert asyncio.run(run()) == [1.0]
    mock.close()


def test_real_channels_are_closed():
    client = SidecarClient(SidecarClientConfig(targets=("127.0.0.1:1",), retry=False, budget_ms=200))
    with pytest.raises(SidecarUnavailable):
        client.rerank("q", ["x"])
    assert client._channels.open_addresses() == ["127.0.0.1:1"]
    client.close()
    assert client._channels.open_addresses() == []
