"""Test PKI: a CA with a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files."""
from __future__ import annotations

import pathlib


def write_pki(root: pathlib.Path, ca, name: str = "test") -> dict[str, pathlib.Path]:
    """Writes `ca` (a trustme.CA) and two certificates it issues under `root`.

    Keys: ca, cert, key (server), client_cert, client_key.
    """
    files = {"ca": root / f"{name}-ca.pem", "cert": root / f"{name}-server.pem", "key": root / f"{name}-server.key",
             "client_cert": root / f"{name}-client.pem", "client_key": root / f"{name}-client.key"}
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("connector@example.test")
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    for blob in server.cert_chain_pems:
        blob.write_to_path(str(files["cert"]), append=True)
    client.private_key_pem.write_to_path(str(files["client_key"]))
    for blob in client.cert_chain_pems:
        blob.write_to_path(str(files["client_cert"]), append=True)
    return files
