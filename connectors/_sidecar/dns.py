"""Sidecar targets: gRPC target syntax parsed, names resolved (system resolver or one DNS server).

Target syntax (gRPC's): `host:port` and `dns:///host:port` (system resolver, IPv4 addresses when
the name has any, else IPv6), `dns://DNS-SERVER:PORT/host:port` (that server is asked for A,
then AAAA records, with dnspython), `ipv4:a:p,b:p`, `ipv6:[a]:p,[b]:p`, an IP literal, or
`unix:PATH` (one endpoint). `pool.EndpointPool` resolves names again every `resolve_seconds`.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import socket
from typing import Callable


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """A parsed target: fixed `addresses`, or a `host` and `port` to resolve (via `dns_server`)."""

    target: str
    addresses: tuple[str, ...] = ()
    host: str = ""
    port: int = 0
    dns_server: tuple[str, int] | None = None

    @property
    def static(self) -> bool:
        return not self.host


def _split_host_port(text: str, target: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if text.startswith("[") and "]" in text:  # [v6]:port
        host, _, rest = text[1:].partition("]")
        sep, port = ":" if rest.startswith(":") else "", rest[1:]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"sidecar target {target!r}: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def address(host: str, port: int) -> str:
    """`host:port` as a gRPC channel target (IPv6 in brackets)."""
    ip = _ip(host)
    return f"[{host}]:{port}" if ip is not None and ip.version == 6 else f"{host}:{port}"


def parse_target(target: str) -> TargetSpec:
    """Parses gRPC target syntax; a clear ValueError for anything else."""
    target = target.strip()
    if target.startswith("unix:"):
        return TargetSpec(target, addresses=(target,))
    for scheme in ("ipv4:", "ipv6:"):
        if target.startswith(scheme):
            parts = [p.strip() for p in target[len(scheme):].split(",") if p.strip()]
            if not parts:
                raise ValueError(f"sidecar target {target!r}: no addresses after {scheme}")
            found = []
            for part in parts:
                host, port = _split_host_port(part, target)
                ip = _ip(host)
                if ip is None or ip.version != int(scheme[3]):
                    raise ValueError(f"sidecar target {target!r}: {host!r} is not an {scheme[:-1]} address")
                found.append(address(host, port))
            return TargetSpec(target, addresses=tuple(dict.fromkeys(found)))
    dns_server = None
    rest = target
    if target.startswith("dns:"):
        rest = target[4:]
        if rest.startswith("//"):
            authority, slash, rest = rest[2:].partition("/")
            if not slash:
                raise ValueError(f"sidecar target {target!r}: expected dns://[DNS-SERVER:PORT]/host:port")
            if authority:
                server, server_port = _split_host_port(authority, target)
                if _ip(server) is None:
                    raise ValueError(f"sidecar target {target!r}: the DNS server must be an IP address")
                dns_server = (server, server_port)
    host, port = _split_host_port(rest, target)
    if _ip(host) is not None:
        return TargetSpec(target, addresses=(address(host, port),))
    return TargetSpec(target, host=host, port=port, dns_server=dns_server)


def split_targets(text: str) -> tuple[str, ...]:
    """A comma-separated list of targets (`--sidecar a:1,ipv4:10.0.0.1:1,10.0.0.2:1`): an IP
    address after an `ipv4:` / `ipv6:` target of its version belongs to that target's list."""
    out: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        if out and out[-1].startswith(("ipv4:", "ipv6:")) and not piece.startswith(("ipv4:", "ipv6:", "dns:", "unix:")):
            try:
                host, _ = _split_host_port(piece, piece)
            except ValueError:
                host = ""
            ip = _ip(host)
            if ip is not None and ip.version == int(out[-1][3]):
                out[-1] += "," + piece
                continue
        out.append(piece)
    return tuple(out)


def resolve_system(host: str, port: int) -> list[str]:
    """Addresses of `host` from the system resolver (getaddrinfo): IPv4 if any, else IPv6."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    v4 = [i[4][0] for i in infos if i[0] == socket.AF_INET]
    v6 = [i[4][0] for i in infos if i[0] == socket.AF_INET6]
    return [address(h, port) for h in dict.fromkeys(v4 or v6)]


def resolve_dns_server(server: tuple[str, int], host: str, port: int, timeout: float = 2.0) -> list[str]:
    """A, else AAAA records of `host` from one DNS server (dnspython)."""
    import dns.exception
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server[0]]
    resolver.port = server[1]
    resolver.lifetime = timeout
    for rdtype in ("A", "AAAA"):
        try:
            answer = resolver.resolve(host, rdtype, search=False)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        except dns.exception.DNSException as exc:
            raise OSError(f"DNS query to {server[0]}:{server[1]} for {host}: {exc}") from None
        return sorted(address(r.address, port) for r in answer)
    return []


def resolver_for(spec: TargetSpec) -> Callable[[], list[str]]:
    if spec.static:
        return lambda: list(spec.addresses)
    if spec.dns_server is not None:
        return lambda: resolve_dns_server(spec.dns_server, spec.host, spec.port)  # type: ignore[arg-type]
    return lambda: resolve_system(spec.host, spec.port)
