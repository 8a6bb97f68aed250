"""The sidecar process: wiring, lifecycle (load, warm up, serve, drain) and the `serve` command.

The only module that knows every other: it builds the core (queues, cache, service), starts the
gRPC transport (transport/grpc.py) and the HTTP one (transport/http.py), and drains on SIGTERM.
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import pathlib
import signal
import sys
import time
from typing import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from pydantic import ValidationError

from rescore_sidecar.sidecar import metrics
from rescore_sidecar.sidecar import settings
from rescore_sidecar.sidecar.backends import Backend, load_backend
from rescore_sidecar.sidecar.core.cache import ScoreCache
from rescore_sidecar.sidecar.core.calibration import calibration_inputs
from rescore_sidecar.sidecar.core.profiling import BatchProfiler, ProfileSpec
from rescore_sidecar.sidecar.core.queue import BatchLimits, ModelQueue, default_batch_tokens
from rescore_sidecar.sidecar.core.tokenization import tokenize_request
from rescore_sidecar.sidecar.config import SidecarConfig, load_config
from rescore_sidecar.sidecar.transport.grpc import SERVICE_NAME, GrpcTransport
from rescore_sidecar.sidecar.transport.security import BearerTokenInterceptor, server_credentials
from rescore_sidecar.sidecar.core.service import RerankService

log = logging.getLogger("sidecar")

WARMUP_QUERY = "warm-up query"
WARMUP_DOCUMENTS = ["a short warm-up document", "another warm-up document " * 8]


def warm_up(backend: Backend) -> None:
    """Runs one real batch so the first request pays no lazy-initialisation cost."""
    tokenized = tokenize_request(backend, WARMUP_QUERY, WARMUP_DOCUMENTS)
    backend.forward(tokenized.sequences)


class Sidecar:
    """Lifecycle of one server process: load, warm up, serve, drain."""

    def __init__(self, config: SidecarConfig) -> None:
        self.config = config
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.service: RerankService | None = None
        self.port: int | None = None
        self.http_port: int | None = None
        self._http_runner = None  # aiohttp AppRunner when http_port is set
        self._stopping = asyncio.Event()
        self._queues: dict[str, ModelQueue] = {}
        self._pools: list[concurrent.futures.Executor] = []

    async def _set_health(self, status: int) -> None:
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def start(self) -> None:
        cfg = self.config
        options = [("grpc.max_receive_message_length", cfg.max_request_bytes + 4096),
                   ("grpc.max_send_message_length", 64 * 1024 * 1024),
                   ("grpc.so_reuseport", 0)]
        token = cfg.token()
        interceptors = [BearerTokenInterceptor(token)] if token else []
        self.server = grpc.aio.server(options=options, interceptors=interceptors)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        reflection.enable_server_reflection([SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server)
        transport = GrpcTransport()
        self.server.add_generic_rpc_handlers((transport.handler(),))
        credentials = server_credentials(cfg)
        address = f"{cfg.host}:{cfg.port}"
        self.port = (self.server.add_secure_port(address, credentials) if credentials
                     else self.server.add_insecure_port(address))
        if self.port == 0:
            raise RuntimeError(f"cannot listen on {cfg.host}:{cfg.port}")
        # Health answers NOT_SERVING while models load, so orchestrators can probe early.
        await self.server.start()
        log.info("listening on %s:%d (%s%s; NOT_SERVING until models are loaded)", cfg.host, self.port,
                 "mutual TLS" if cfg.tls_client_ca_file else "TLS" if credentials else "plaintext",
                 ", bearer token required" if token else "")
        if cfg.http_port:
            from rescore_sidecar.sidecar.transport.http import HttpTransport, start_http

            http_transport = HttpTransport(cfg, serving=lambda: self.service is not None and not self.service.draining)
            self._http_runner, self.http_port = await start_http(http_transport, cfg.host, cfg.http_port)
            log.info("HTTP rerank API on %s://%s:%d (not ready until models are loaded)",
                     "https" if cfg.tls_cert_file else "http", cfg.host, self.http_port)
        if cfg.metrics_port:
            metrics.serve_metrics(cfg.metrics_host, cfg.metrics_port)
            log.info("metrics on http://%s:%d/metrics", cfg.metrics_host, cfg.metrics_port)

        loop = asyncio.get_running_loop()
        backends = await loop.run_in_executor(None, self._load_models)
        tokenize_pool = concurrent.futures.ThreadPoolExecutor(cfg.tokenizer_threads, thread_name_prefix="tokenize")
        self._pools.append(tokenize_pool)
        compute_pools: dict[str, concurrent.futures.Executor] = {}  # one compute thread per device
        for backend in backends.values():
            # max_batch_tokens unset: the budget of the model's device type (core/queue.py DEVICE_BATCH_TOKENS)
            limits = BatchLimits(cfg.max_batch_tokens or default_batch_tokens(backend.device), cfg.max_batch_pairs,
                                 cfg.max_wait_ms, cfg.max_queue_pairs)
            key = str(backend.device)
            if key not in compute_pools:
                compute_pools[key] = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"compute-{key}")
                self._pools.append(compute_pools[key])
            profiler = (BatchProfiler(ProfileSpec(pathlib.Path(cfg.profile_dir), cfg.profile_batches,
                                                  cfg.profile_skip_batches), backend.name)
                        if cfg.profile_dir else None)
            queue = ModelQueue(backend, compute_pools[key], limits, profiler)
            queue.start()
            self._queues[backend.name] = queue
        default = cfg.default_model or next(iter(backends))
        if default not in backends:
            raise ValueError(f"default_model {default!r} is not among the served models {sorted(backends)}")
        unknown = {alias: served for alias, served in cfg.model_aliases.items() if served not in backends}
        if unknown:
            raise ValueError(f"model_aliases name models that are not served: {unknown}; served: {sorted(backends)}")
        cache = ScoreCache(int(cfg.cache_bytes)) if cfg.cache_bytes else None
        self.service = RerankService(cfg, backends, self._queues, tokenize_pool, default, cache)
        transport.service = self.service
        if self._http_runner is not None:
            http_transport.service = self.service
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("SERVING models %s (default %s)", ", ".join(backends), default)

    def _load_models(self) -> dict[str, Backend]:
        import torch

        if self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        backends: dict[str, Backend] = {}
        for spec in self.config.model_specs():
            backend = load_backend(spec, device=self.config.device, dtype=self.config.dtype,
                                   default_query_tokens=self.config.max_query_tokens,
                                   cache_dir=self.config.model_cache_dir, threads=self.config.torch_threads,
                                   calibrate=calibration_inputs, cuda_graphs=self.config.cuda_graphs)
            if backend.name in backends:
                raise ValueError(f"two models are named {backend.name!r}; give them distinct NAME= prefixes")
            warm_up(backend)
            metrics.MODEL_INFO.labels(backend.name, backend.kind, str(backend.device), backend.dtype_name).set(1)
            backends[backend.name] = backend
        return backends

    def request_stop(self) -> None:
        self._stopping.set()

    async def wait_and_drain(self) -> None:
        await self._stopping.wait()
        log.info("draining: NOT_SERVING, finishing in-flight requests (grace %.1fs)", self.config.drain_seconds)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        # New Rerank calls get UNAVAILABLE while in-flight ones finish; the port stays
        # open meanwhile so health checks see NOT_SERVING rather than a refused connection.
        until = time.monotonic() + self.config.drain_seconds
        if self.service:
            self.service.draining = True
            while self.service.in_flight and time.monotonic() < until:
                await asyncio.sleep(0.05)
            if self.service.in_flight:
                log.warning("grace period over with %d requests in flight; cancelling them", self.service.in_flight)
        if self._http_runner is not None:
            await self._http_runner.cleanup()
        if self.server:
            await self.server.stop(max(until - time.monotonic(), 0.5))
        for queue in self._queues.values():
            await queue.close()
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)
        log.info("stopped")


async def run(config: SidecarConfig) -> None:
    sidecar = Sidecar(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, sidecar.request_stop)
    drain = asyncio.create_task(sidecar.wait_and_drain())
    start = asyncio.create_task(sidecar.start())
    done, _ = await asyncio.wait({start, drain}, return_when=asyncio.FIRST_COMPLETED)
    if start in done and start.exception() is None:
        await drain
        return
    if start in done:  # start failed: stop whatever was started, then report
        sidecar.request_stop()
        await drain
        raise start.exception()
    start.cancel()  # stop requested while still loading


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rescore-sidecar serve", argument_default=argparse.SUPPRESS,
        description="Serve cross-encoder / bi-encoder reranking over gRPC. Each flag --foo-bar is also "
                    "the environment variable RESCORE_FOO_BAR and the YAML key foo_bar.")
    parser.add_argument("--config", help="YAML file with settings (env RESCORE_CONFIG)")
    parser.add_argument("--model", dest="models", action="append", metavar="[NAME=]SOURCE",
                        help="hub id or local path; repeat to serve several; the first is the default")
    parser.add_argument("--model-alias", dest="model_aliases", action="append", metavar="NAME=SERVED",
                        help="another name for a served model (a hosted name clients send); repeatable")
    settings.add_flags(parser, SidecarConfig, skip=("models", "model_aliases"))
    return parser


def serve_main(argv: Sequence[str]) -> int:
    """`rescore-sidecar serve`."""
    import os

    args = vars(_build_parser().parse_args(list(argv)))
    config_file = args.pop("config", None) or os.environ.get("RESCORE_CONFIG")
    try:
        config = load_config(args, config_file)
    except (ValidationError, ValueError) as exc:
        print(f"rescore-sidecar serve: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    from rescore_sidecar.connectors import logs, tracing

    logs.configure(config.log_level, config.log_format)
    try:
        if tracing.setup("rescore-sidecar", config.tracing):
            log.info("tracing on: OTLP to %s", tracing.endpoint())
    except tracing.TracingUnavailable as exc:
        print(f"rescore-sidecar serve: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(run(config))
    except Exception as exc:  # noqa: BLE001 - report start-up failures plainly
        log.error("sidecar failed: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
        return 1
    finally:
        tracing.shutdown()  # flushes the spans still batched
    return 0
