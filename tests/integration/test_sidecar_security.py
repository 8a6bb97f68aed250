"""TLS, mutual TLS and the shared bearer token, on a real sidecar process."""
from __future__ import annotations

import pathlib
import subprocess
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sidecar.pb.rescore.v1 import rescore_pb2 as pb
from sidecar.pb.rescore.v1 import rescore_pb2_grpc
from tests.support.sidecar_process import SidecarProcess

trustme = pytest.importorskip("trustme")
pytestmark = pytest.mark.integration

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token"
REQUEST = pb.RerankRequest(query="wing", documents=[pb.Document(id="a", text="swept wing")])


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("connector@example.test")
    files = {"ca": root / "ca.pem", "cert": root / "server.pem", "key": root / "server.key",
             "client_cert": root / "client.pem", "client_key": root / "client.key"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    for blob in server.cert_chain_pems:
        blob.write_to_path(str(files["cert"]), append=True)
    client.private_key_pem.write_to_path(str(files["client_key"]))
    for blob in client.cert_chain_pems:
        blob.write_to_path(str(files["client_cert"]), append=True)
    return files


def _start(proc: SidecarProcess, channel_factory) -> SidecarProcess:
    """Starts `proc` and waits for SERVING over a channel from `channel_factory` (TLS-aware)."""
    with open(proc.log_path, "ab") as log:
        proc.process = subprocess.Popen(proc.command(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.process.poll() is None, proc.log_tail()
        with channel_factory() as channel:
            try:
                status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return proc
            except grpc.RpcError:
                pass
        time.sleep(0.2)
    proc.close()
    raise AssertionError(f"sidecar never SERVING:\n{proc.log_tail()}")


def _rerank(channel, metadata=None):
    return rescore_pb2_grpc.RerankerStub(channel).Rerank(REQUEST, timeout=10, metadata=metadata)


def _credentials(pki, with_client_cert: bool):
    kwargs = {"root_certificates": pki["ca"].read_bytes()}
    if with_client_cert:
        kwargs.update(private_key=pki["client_key"].read_bytes(), certificate_chain=pki["client_cert"].read_bytes())
    return grpc.ssl_channel_credentials(**kwargs)


def test_tls_with_bearer_token(tiny_cross_encoder, pki, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    proc = SidecarProcess({"ce": tiny_cross_encoder}, extra_args=[
        "--tls-cert-file", str(pki["cert"]), "--tls-key-file", str(pki["key"]), "--auth-token-file", str(token_file)])
    tls = _credentials(pki, with_client_cert=False)
    _start(proc, lambda: grpc.secure_channel(proc.address, tls))
    try:
        with grpc.secure_channel(proc.address, tls) as channel:
            assert _rerank(channel, [("authorization", f"Bearer {TOKEN}")]).results[0].id == "a"
            for metadata in (None, [("authorization", "Bearer wrong")], [("authorization", TOKEN)]):
                with pytest.raises(grpc.RpcError) as denied:
                    _rerank(channel, metadata)
                assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with grpc.insecure_channel(proc.address) as plaintext:
            with pytest.raises(grpc.RpcError) as refused:
                _rerank(plaintext, [("authorization", f"Bearer {TOKEN}")])
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert TOKEN not in proc.log_path.read_text()
    finally:
        proc.close()


def test_mutual_tls_requires_a_client_certificate(tiny_cross_encoder, pki):
    proc = SidecarProcess({"ce": tiny_cross_encoder}, extra_args=[
        "--tls-cert-file", str(pki["cert"]), "--tls-key-file", str(pki["key"]),
        "--tls-client-ca-file", str(pki["ca"])])
    mtls = _credentials(pki, with_client_cert=True)
    _start(proc, lambda: grpc.secure_channel(proc.address, mtls))
    try:
        with grpc.secure_channel(proc.address, mtls) as channel:
            assert _rerank(channel).results[0].id == "a"
        with grpc.secure_channel(proc.address, _credentials(pki, with_client_cert=False)) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                _rerank(channel)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        proc.close()


def test_inconsistent_tls_settings_are_a_clear_start_up_error(tiny_cross_encoder, pki):
    result = subprocess.run(
        [*SidecarProcess({"ce": tiny_cross_encoder}).command(), "--tls-cert-file", str(pki["cert"])],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "tls_cert_file and tls_key_file must be given together" in result.stderr
