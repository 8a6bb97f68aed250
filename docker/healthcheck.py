"""Container health check: asks the sidecar's standard grpc.health.v1 service whether it is SERVING.

Used by the image's HEALTHCHECK so no grpc_health_probe binary has to be downloaded. Exit 0 when
SERVING, 1 otherwise (not serving, unreachable, timeout), with the reason on stderr.

    python healthcheck.py [--address 127.0.0.1:50051] [--service rescore.v1.Reranker] [--timeout 3]

The port defaults to $RESCORE_PORT so the check follows the server when its port is changed.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(address: str, service: str, timeout: float) -> str:
    """Returns the serving status name reported for `service` at `address`."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default=f"127.0.0.1:{os.environ.get('RESCORE_PORT', '50051')}")
    parser.add_argument("--service", default="rescore.v1.Reranker")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    try:
        status = check(args.address, args.service, args.timeout)
    except grpc.RpcError as exc:
        print(f"unhealthy: {args.address}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    if status != "SERVING":
        print(f"unhealthy: {args.address} service {args.service!r} is {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
