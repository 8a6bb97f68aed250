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


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = load_config(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"rescore-sidecar proxy: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
