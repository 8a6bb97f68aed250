"""Sidecar targets: gRPC target syntax parsed, clear errors, the system resolver, lists of targets."""
from __future__ import annotations

import pytest

from rescore_sidecar.connectors._sidecar.dns import parse_target, resolve_system, split_targets


@pytest.mark.parametrize("target, addresses, host", [
    ("ipv4:127.0.0.1:1,127.0.0.2:1", ("127.0.0.1:1", "127.0.0.2:1"), ""),
    ("ipv6:[::1]:5,[::2]:5", ("[::1]:5", "[::2]:5"), ""),
    ("127.0.0.1:9", ("127.0.0.1:9",), ""),
    ("[::1]:9", ("[::1]:9",), ""),
    ("unix:/tmp/s.sock", ("unix:/tmp/s.sock",), ""),
    ("sidecar-headless:50051", (), "sidecar-headless"),
    ("dns:///sidecar-headless.ns.svc:50051", (), "sidecar-headless.ns.svc"),
])
def test_parse_target(target, addresses, host):
    spec = parse_target(target)
    assert spec.addresses == addresses and spec.host == host


def test_parse_target_with_dns_server():
    spec = parse_target("dns://127.0.0.1:5353/replicas.test:50051")
    assert spec.dns_server == ("127.0.0.1", 5353) and spec.host == "replicas.test" and spec.port == 50051


@pytest.mark.parametrize("target", ["sidecar", "ipv4:", "ipv4:::1:5", "ipv6:127.0.0.1:5", "host:notaport",
                                    "host:0", "dns://name.example:53/host:1", "dns://x"])
def test_bad_targets_are_clear_errors(target):
    with pytest.raises(ValueError, match="sidecar target"):
        parse_target(target)


def test_system_resolver_prefers_ipv4_for_localhost():
    assert resolve_system("localhost", 7) == ["127.0.0.1:7"]


def test_split_targets_keeps_an_ipv4_list_whole():
    assert split_targets("ipv4:127.0.0.1:5,127.0.0.2:5, side:7,ipv6:[::1]:5,[::2]:5,127.0.0.3:5") == (
        "ipv4:127.0.0.1:5,127.0.0.2:5", "side:7", "ipv6:[::1]:5,[::2]:5", "127.0.0.3:5")
