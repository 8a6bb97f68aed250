"""`rescore-sidecar proxy`: run the HTTP rescoring proxy until SIGINT/SIGTERM."""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Sequence

from rescore_sidecar.connectors.proxy.config import ConfigError, ProxyConfig, build_parser, load_config

__all__ = ["build_parser", "main", "serve"]


async def serve(config: ProxyConfig) -> None:
    from rescore_sidecar.connectors.proxy.app import start, stop

    from rescore_sidecar.connectors import tracing

    runner, state, port = await start(config)
    logging.getLogger("rescore.proxy").info(
        "proxy listening on %s:%d -> %s (sidecar: %s)", config.listen_host, port,
        ", ".join(config.upstreams), ", ".join(config.sidecars) or "none, rescoring off")
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    try:
        await done.wait()
    finally:
        await stop(runner, state)
        tracing.shutdown()  # flushes the spans still batched


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = load_config(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"rescore-sidecar proxy: {exc}", file=sys.stderr)
        return 2
    from rescore_sidecar.connectors import logs, tracing

    logs.configure(config.log_level, config.log_format)
    try:
        if tracing.setup("rescore-proxy", config.tracing or tracing.switch() is True):
            logging.getLogger("rescore.proxy").info("tracing on: OTLP to %s", tracing.endpoint())
    except tracing.TracingUnavailable as exc:
        print(f"rescore-sidecar proxy: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
