"""TLS towards the upstream (verification, CA bundle, insecure, client certificate), upstream
timeouts, and credentials never reaching the logs. Local aiohttp upstreams on loopback."""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl

import aiohttp
import pytest
import trustme
from aiohttp import web

from rescore_sidecar.connectors.proxy.app import start, stop
from rescore_sidecar.connectors.proxy.config import ProxyConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


async def _serve(handler, ssl_context=None):
    runner = web.ServerRunner(web.Server(handler))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
    return runner, port


async def _client_cert_echo(request: web.BaseRequest) -> web.Response:
    peer = request.transport.get_extra_info("peercert")
    subject = dict(x[0] for x in peer["subject"]) if peer else {}
    return web.json_response({"client": subject.get("commonName", "")})


@pytest.fixture
async def tls_upstream(ca, tmp_path):
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_OPTIONAL  # ask for a client certificate, do not require one
    runner, port = await _serve(_client_cert_echo, server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    client = ca.issue_cert("proxy-client", common_name="proxy-client")
    cert_file = tmp_path / "client.pem"
    client.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    yield {"url": f"https://127.0.0.1:{port}", "ca": str(ca_file), "client_cert": str(cert_file)}
    await runner.cleanup()


async def _get(config: ProxyConfig, path: str = "/", headers=None) -> tuple[int, dict]:
    runner, state, port = await start(config, host="127.0.0.1", port=0)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as r:
                return r.status, await r.json()
    finally:
        await stop(runner, state)


async def test_tls_upstream_is_verified(tls_upstream):
    # Unknown CA: refused, reported as an unreachable upstream.
    status, body = await _get(ProxyConfig(upstreams=(tls_upstream["url"],)))
    assert status == 502 and body["error"]["type"] == "proxy_upstream_unreachable"
    status, body = await _get(ProxyConfig(upstreams=(tls_upstream["url"],), upstream_ca=tls_upstream["ca"]))
    assert status == 200 and body == {"client": ""}
    status, _ = await _get(ProxyConfig(upstreams=(tls_upstream["url"],), upstream_insecure=True))
    assert status == 200


async def test_client_certificate_is_presented(tls_upstream):
    status, body = await _get(ProxyConfig(upstreams=(tls_upstream["url"],), upstream_ca=tls_upstream["ca"],
                                          upstream_client_cert=tls_upstream["client_cert"]))
    assert status == 200 and body == {"client": "proxy-client"}


async def test_slow_upstream_gives_504_and_credentials_stay_out_of_logs(caplog):
    async def slow(request):
        await asyncio.sleep(1)
        return web.Response(text="late")

    runner, port = await _serve(slow)
    caplog.set_level(logging.DEBUG)
    try:
        status, body = await _get(ProxyConfig(upstreams=(f"http://127.0.0.1:{port}",), upstream_timeout=0.2),
                                  headers={"Authorization": "Basic c2VjcmV0LXRva2Vu"})
        assert status == 504 and body["error"]["type"] == "proxy_upstream_timeout"
        status, _ = await _get(ProxyConfig(upstreams=(f"http://127.0.0.1:{free_port()}",)),
                               headers={"Authorization": "Basic c2VjcmV0LXRva2Vu"})
        assert status == 502
    finally:
        await runner.cleanup()
    assert "c2VjcmV0LXRva2Vu" not in caplog.text
