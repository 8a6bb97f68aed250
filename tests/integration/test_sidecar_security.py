"""TLS, mutual TLS and the shared bearer token, on a real sidecar process."""
from __future__ import annotations

import pathlib
import subprocess

import grpc
import pytest

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.proto.rescore.v1 import rescore_pb2_grpc
from tests.support.pki import write_pki
from rescore_sidecar.tools.sidecar_process import SidecarProcess

trustme = pytest.importorskip("trustme")
pytestmark = pytest.mark.integration

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token"
REQUEST = pb.RerankRequest(query="wing", documents=[pb.Document(id="a", text="swept wing")])


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    return write_pki(tmp_path_factory.mktemp("pki"), trustme.CA())


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
    tls = _credentials(pki, with_client_cert=False)
    proc = SidecarProcess({"ce": tiny_cross_encoder}, credentials=tls, extra_args=[
        "--tls-cert-file", str(pki["cert"]), "--tls-key-file", str(pki["key"]), "--auth-token-file", str(token_file)])
    proc.start()  # its health probe sends no token: health stays open
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
    mtls = _credentials(pki, with_client_cert=True)
    proc = SidecarProcess({"ce": tiny_cross_encoder}, credentials=mtls, extra_args=[
        "--tls-cert-file", str(pki["cert"]), "--tls-key-file", str(pki["key"]),
        "--tls-client-ca-file", str(pki["ca"])])
    proc.start()
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
