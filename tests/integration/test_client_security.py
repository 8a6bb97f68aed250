"""Client side of transport security: the connectors (sync + async) and the proxy talk to a real
sidecar started with TLS / mutual TLS and a bearer token, with certificates made in the test.
Right credentials: searches come back reranked. Wrong or missing ones: the search still
succeeds, in engine order, with the fallback reason set. The proxy logs neither the client's
Authorization header, nor the sidecar token, nor document text.
"""
from __future__ import annotations

import asyncio
import json
import warnings

import grpc
import httpx
import pytest

from rescore_sidecar.connectors import (AsyncRescoringOpenSearch, BreakerConfig, ConnectorConfig, RerankOptions,
                        RescoringOpenSearch, SidecarClientConfig)
from rescore_sidecar.tools.proxy_process import proxy_process
from tests.support.pki import write_pki
from rescore_sidecar.tools.sidecar_process import SidecarProcess

trustme = pytest.importorskip("trustme")
pytestmark = pytest.mark.integration

TOKEN = "tok-7f3a9c-right"
INDEX = "client-security"
SECRET_TEXT = "zanzibar-quokka-document-text"
QUERY = {"query": {"match": {"body": "wing"}}, "size": 10}
# A breaker that never opens, so each case sees the sidecar's own answer.
NO_BREAKER = BreakerConfig(minimum_calls=10_000, window_size=10_000)


def _write_pki(root, ca, name: str) -> dict:
    return {k: str(v) for k, v in write_pki(root, ca, name).items()}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The sidecar's CA (`good`) and an unrelated one (`other`) for wrong certificates."""
    root = tmp_path_factory.mktemp("client-pki")
    token_file = root / "token"
    token_file.write_text(TOKEN + "\n")
    return {"good": _write_pki(root, trustme.CA(), "good"), "other": _write_pki(root, trustme.CA(), "other"),
            "token_file": str(token_file)}


def _tls_health(pki) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=open(pki["good"]["ca"], "rb").read(),
                                        private_key=open(pki["good"]["client_key"], "rb").read(),
                                        certificate_chain=open(pki["good"]["client_cert"], "rb").read())


@pytest.fixture(scope="module")
def mtls_sidecar(tiny_cross_encoder, pki):
    """Mutual TLS and a bearer token."""
    good = pki["good"]
    proc = SidecarProcess({"tiny": tiny_cross_encoder}, credentials=_tls_health(pki), extra_args=[
        "--tls-cert-file", good["cert"], "--tls-key-file", good["key"], "--tls-client-ca-file", good["ca"],
        "--auth-token-file", pki["token_file"]])
    proc.start()
    yield proc
    proc.close()


@pytest.fixture(scope="module")
def tls_sidecar(tiny_cross_encoder, pki):
    """Server-side TLS only (no client certificate) and a bearer token."""
    good = pki["good"]
    proc = SidecarProcess({"tiny": tiny_cross_encoder},
                          credentials=grpc.ssl_channel_credentials(open(good["ca"], "rb").read()),
                          extra_args=["--tls-cert-file", good["cert"], "--tls-key-file", good["key"],
                                      "--auth-token", TOKEN])
    proc.start()
    yield proc
    proc.close()


@pytest.fixture(scope="module")
def indexed(opensearch_node):
    client = opensearch_node.client()
    if not client.indices.exists(index=INDEX):
        ops = []
        for i in range(12):
            ops += [{"index": {"_index": INDEX, "_id": str(i)}},
                    {"body": f"wing {'swept ' * (i % 4)} flow {SECRET_TEXT} {i}"}]
        client.bulk(body=ops, refresh=True)
    return opensearch_node


def _config(address: str, **security) -> ConnectorConfig:
    return ConnectorConfig(default=RerankOptions(window=10, fields=("body",)),
                           sidecar=SidecarClientConfig(targets=(address,), budget_ms=3000, breaker=NO_BREAKER, **security))


def _search(node, config: ConnectorConfig) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # token over plaintext, in the wrong-credential cases
        client = RescoringOpenSearch(node.client(), config)
    try:
        return client.search(index=INDEX, body=QUERY)
    finally:
        client.close()


async def _search_async(node, config: ConnectorConfig) -> dict:
    client = AsyncRescoringOpenSearch(node.async_client(), config)
    try:
        return await client.search(index=INDEX, body=QUERY)
    finally:
        await client.close()


def _engine_ids(node) -> list[str]:
    return [h["_id"] for h in node.client().search(index=INDEX, body=QUERY)["hits"]["hits"]]


def _outcome(response: dict, engine_ids: list[str]) -> str:
    mark = response["_rescore"]
    ids = [h["_id"] for h in response["hits"]["hits"]]
    if mark.get("reranked"):
        assert sorted(ids) == sorted(engine_ids)
        return "reranked"
    assert ids == engine_ids, "a fallback must keep the engine's order"
    return f"fallback:{mark['fallback']}"


def test_mutual_tls_and_token_sync_and_async(indexed, mtls_sidecar, pki):
    good, other = pki["good"], pki["other"]
    right = dict(ca_file=good["ca"], client_cert_file=good["client_cert"], client_key_file=good["client_key"])
    engine_ids = _engine_ids(indexed)
    cases = {
        "right, token from file": (dict(right, auth_token_file=pki["token_file"]), "reranked"),
        "right, token as value": (dict(right, auth_token=TOKEN), "reranked"),
        "wrong token": (dict(right, auth_token="nope"), "fallback:unauthenticated"),
        "no token": (right, "fallback:unauthenticated"),
        "no client certificate": (dict(ca_file=good["ca"], auth_token=TOKEN), "fallback:unavailable"),
        "client certificate of another CA": (dict(ca_file=good["ca"], client_cert_file=other["client_cert"],
                                                  client_key_file=other["client_key"], auth_token=TOKEN),
                                             "fallback:unavailable"),
        "server not trusted (other CA)": (dict(right, ca_file=other["ca"], auth_token=TOKEN), "fallback:unavailable"),
        "plaintext to a TLS port": (dict(auth_token=TOKEN), "fallback:unavailable"),
    }
    seen = {name: _outcome(_search(indexed, _config(mtls_sidecar.address, **security)), engine_ids)
            for name, (security, _) in cases.items()}
    assert seen == {name: want for name, (_, want) in cases.items()}

    async def both() -> list[str]:
        ok = await _search_async(indexed, _config(mtls_sidecar.address, **right, auth_token_file=pki["token_file"]))
        bad = await _search_async(indexed, _config(mtls_sidecar.address, **right, auth_token="nope"))
        return [_outcome(ok, engine_ids), _outcome(bad, engine_ids)]

    assert asyncio.run(both()) == ["reranked", "fallback:unauthenticated"]


def test_server_tls_with_token(indexed, tls_sidecar, pki):
    engine_ids = _engine_ids(indexed)
    good = pki["good"]
    assert _outcome(_search(indexed, _config(tls_sidecar.address, ca_file=good["ca"], auth_token=TOKEN)),
                    engine_ids) == "reranked"
    # The server name can be pinned separately from the address it is reached at.
    assert _outcome(_search(indexed, _config(tls_sidecar.address, ca_file=good["ca"], auth_token=TOKEN,
                                             tls_server_name="localhost")), engine_ids) == "reranked"
    assert _outcome(_search(indexed, _config(tls_sidecar.address, ca_file=good["ca"], auth_token="x")),
                    engine_ids) == "fallback:unauthenticated"


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="client_cert_file and client_key_file"):
        SidecarClientConfig(client_cert_file="a.pem")
    with pytest.raises(ValueError, match="ca_file"):
        from rescore_sidecar.connectors._sidecar.client import SidecarClient
        SidecarClient(SidecarClientConfig(ca_file=str(tmp_path / "missing.pem")))
    assert TOKEN not in repr(SidecarClientConfig(auth_token=TOKEN))


def test_proxy_with_mtls_and_token_never_logs_secrets(indexed, mtls_sidecar, pki):
    good, url = pki["good"], f"/{INDEX}/_search"
    tls_args = ["--sidecar", mtls_sidecar.address, "--sidecar-ca", good["ca"],
                "--sidecar-client-cert", good["client_cert"], "--sidecar-client-key", good["client_key"],
                "--rescore", json.dumps({"window": 10, "fields": ["body"]}), "--budget-ms", "3000",
                "--log-level", "DEBUG"]
    client_auth = "Basic dXNlcjpjbGllbnQtc2VjcmV0LXBhc3N3b3Jk"  # user:client-secret-password
    headers = {"Authorization": client_auth, "Content-Type": "application/json"}
    with proxy_process(indexed.url, *tls_args, "--sidecar-token-file", pki["token_file"]) as proxy:
        r = httpx.post(proxy.url + url, json=QUERY, headers=headers, timeout=30)
        assert r.status_code == 200 and r.headers["x-rescore"] == "reranked", r.text
        # Bad JSON, a bad toggle and a passthrough request: the error paths log too.
        assert httpx.post(proxy.url + url, content=b'{"query": ', headers=headers, timeout=30).status_code == 400
        assert httpx.post(proxy.url + url + "?rescore=maybe", json=QUERY, headers=headers,
                          timeout=30).status_code == 400
        assert httpx.get(proxy.url + f"/{INDEX}/_doc/1", headers=headers, timeout=30).status_code == 200
        log = proxy.log_text()
    with proxy_process(indexed.url, *tls_args, env={"RESCORE_PROXY_SIDECAR_TOKEN": "wrong-token-value"}) as proxy:
        r = httpx.post(proxy.url + url, json=QUERY, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        assert (r.headers["x-rescore"], r.headers["x-rescore-fallback"]) == ("fallback", "unauthenticated")
        assert [h["_id"] for h in r.json()["hits"]["hits"]] == _engine_ids(indexed)
        log += proxy.log_text()
    assert "proxy listening" in log  # the log was captured, so the grep below means something
    for secret in (TOKEN, "wrong-token-value", "dXNlcjpjbGllbnQtc2VjcmV0LXBhc3N3b3Jk", SECRET_TEXT):
        assert secret not in log, f"{secret!r} appears in the proxy log"
