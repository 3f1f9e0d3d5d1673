"""``catga-bench serve``: the reference core as its own process, driven over NATS or Redis.

The process connects to the broker, answers control requests from load generators
(:class:`~catga_bench.targets.served.server.BenchServer`), and serves the requested scenario's
handlers: one :class:`~core.transport.endpoint.MediatorEndpoint` per message stream, at the
scenario's QoS (QoS 0 over core subjects / Pub/Sub, QoS 1 and 2 over JetStream / Redis
Streams). What each handler does is reported back to the generator that sent the message, in
batches that are flushed before the messages are acknowledged. ``/metrics`` exports the core's
metrics. Scenario files are read as data (:mod:`catga_bench.workload.loader`): this process
never imports Locust.

With ``--asyncapi FILE`` the core is a black box instead (:mod:`catga_bench.targets.served.
blackbox`): it consumes plain JSON inputs on the document's input channel and emits one output
per handled message on its output channel, for ``--sut asyncapi`` generators.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from catga_bench.bundled import local_or_shipped
from catga_bench.errors import EXIT_ENVIRONMENT, EXIT_USAGE, ConfigError
from catga_bench.targets.defects import defects_from_env
from catga_bench.targets.served.server import BenchServer
from catga_bench.workload.loader import load_scenarios
from catga_bench.workload.scenario import Scenario
from core.transport import BrokerUnavailable, open_transport

log = logging.getLogger("catga.serve")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="catga-bench serve",
        description="Run the reference core as its own process, serving a scenario's handlers "
                    "over NATS or Redis for load generators started with --transport.",
        epilog="example:\n  catga-bench serve --transport nats --scenario scenarios/"
               "high_fanout.py\n  locust -f scenarios/high_fanout.py --transport nats "
               "--headless -u 10 -r 10 -t 30s\n  catga-bench serve --transport nats --asyncapi "
               "scenarios/specs/catga-core.asyncapi.yaml --scenario scenarios/core_black_box.py"
               "\n  locust -f scenarios/core_black_box.py --headless -u 10 -r 10 -t 30s"
               "\n\nexit codes: 0 stopped cleanly, 2 usage, "
               "3 broker unreachable",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--transport", choices=("nats", "redis"), required=True,
                   help="the broker between generators and this core")
    p.add_argument("--nats-url", default=os.environ.get("CATGA_NATS_URL",
                                                        "nats://127.0.0.1:4222"),
                   help="NATS server (default: %(default)s; env CATGA_NATS_URL)")
    p.add_argument("--redis-url", default=os.environ.get("CATGA_REDIS_URL",
                                                         "redis://127.0.0.1:6379"),
                   help="Redis server (default: %(default)s; env CATGA_REDIS_URL)")
    p.add_argument("--scenario", type=Path, action="append", default=[], metavar="FILE",
                   help="scenario file this core may serve (repeatable), besides --scenarios")
    p.add_argument("--scenarios", type=Path, default=None, metavar="DIR",
                   help="directory of scenario files generators may ask for (default: "
                        "./scenarios, else the scenarios shipped with catga-bench)")
    p.add_argument("--metrics-port", type=int, default=9464, metavar="PORT",
                   help="serve /metrics on this port, 0 = off (default: %(default)s)")
    p.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                   help="address for /metrics (default: %(default)s; 0.0.0.0 in containers)")
    p.add_argument("--max-in-flight", type=int, default=1024, metavar="N",
                   help="deliveries handled at once per stream (default: %(default)s)")
    p.add_argument("--idempotency", choices=("memory", "redis"), default="memory",
                   help="QoS 2 deduplication store: memory (lost when this process dies) or "
                        "redis (at --redis-url; survives a restart). Default: %(default)s")
    p.add_argument("--idempotency-lease-s", type=float, default=10.0, metavar="S",
                   help="how long a claimed message id stays claimed by a core that died "
                        "mid-message before another may run it (redis store; default: "
                        "%(default)s)")
    p.add_argument("--ack-wait-s", type=float, default=30.0, metavar="S",
                   help="seconds before an unacknowledged QoS>=1 message is redelivered "
                        "(default: %(default)s)")
    bb = p.add_argument_group("black box (driven by --sut asyncapi; docs/sut.md)")
    bb.add_argument("--asyncapi", type=Path, default=None, metavar="FILE",
                    help="serve as the black box this AsyncAPI 3 document describes (NATS "
                         "only): plain JSON inputs on its input channel, one output per "
                         "handled message on its output channel; the handlers are the one "
                         "stream of the one scenario in --scenario FILE")
    bb.add_argument("--qos", type=int, choices=(0, 1, 2), default=None,
                    help="with --asyncapi: the input's QoS, 0 core NATS, 1 or 2 JetStream "
                         "(default: the document's x-catga-bench.qos, else the scenario's)")
    return p


async def _amain(args: argparse.Namespace, scenarios: dict[str, Scenario]) -> int:
    try:
        defects = defects_from_env()
    except ConfigError as exc:
        sys.stderr.write(f"catga-bench serve: error: {exc}\n")
        return EXIT_USAGE

    url = args.nats_url if args.transport == "nats" else args.redis_url
    transport = open_transport(args.transport, url, ack_wait_s=args.ack_wait_s)
    try:
        await transport.connect()
    except BrokerUnavailable as exc:
        sys.stderr.write(f"catga-bench serve: error: {exc}\n")
        return EXIT_ENVIRONMENT
    store: Any = None
    if args.idempotency == "redis":
        import redis.asyncio as aioredis

        from core.idempotency_redis import RedisIdempotencyStore

        # Claims come from every handler of every message in flight: share a bounded pool
        # that makes callers wait for a connection instead of failing ("Too many connections")
        pool = aioredis.BlockingConnectionPool.from_url(args.redis_url, max_connections=64,
                                                        timeout=30)
        redis_client = aioredis.Redis(connection_pool=pool)
        store = RedisIdempotencyStore(redis_client, lease_s=args.idempotency_lease_s)
        try:
            await store.begin("catga-bench:probe")  # reachable? (fails fast with one line)
            store.abort("catga-bench:probe")
        except Exception as exc:
            sys.stderr.write(f"catga-bench serve: error: idempotency store {args.redis_url} "
                             f"is unreachable: {exc}\n")
            await transport.close()
            return EXIT_ENVIRONMENT
    server: Any
    if args.asyncapi is not None:
        server = _black_box(args, transport, scenarios, defects)
        if server is None:
            await transport.close()
            return EXIT_USAGE
        if store is not None:
            server.core.mediator.idempotency = store
    else:
        server = BenchServer(transport, scenarios, defects=defects,
                             max_in_flight=args.max_in_flight, idempotency=store,
                             ack_wait_s=args.ack_wait_s)
    if args.metrics_port:
        from prometheus_client import CollectorRegistry, start_http_server

        from core.mediator import Mediator
        from core.metrics import CatgaCollector
        from core.transport.metrics import TransportCollector

        registry = CollectorRegistry()
        server.collector = CatgaCollector(Mediator())
        registry.register(server.collector)
        registry.register(TransportCollector(transport))
        start_http_server(args.metrics_port, args.metrics_host, registry)
        log.info("metrics on http://%s:%d/metrics", args.metrics_host, args.metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    if args.asyncapi is not None and server.collector is not None:
        server.collector.mediator = server.core.mediator
        server.collector.lag_monitor = server.core.lag
    log.info("catga-bench serve: ready: %s at %s; scenarios: %s", args.transport, url,
             ", ".join(sorted(scenarios)))
    last = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 10.0)
        if args.asyncapi is not None and time.monotonic() - last >= 10.0:
            last = time.monotonic()
            log.info("%s", server.summary())
        elif args.asyncapi is None and server.run is not None \
                and time.monotonic() - last >= 10.0:
            last = time.monotonic()
            ts = transport.stats
            log.info("serving %s: received %d, acked %d, redelivered %d, dead-lettered %d, "
                     "reconnects %d", server.run.name, ts.received, ts.acked, ts.redelivered,
                     ts.dead_lettered, ts.reconnects)
    await server.close()
    await transport.close()
    if store is not None:
        await store.flush()
        await redis_client.aclose()
        await pool.aclose()
    return 0


def _black_box(args: argparse.Namespace, transport: Any, scenarios: dict[str, Scenario],
               defects: frozenset[str]) -> Any:
    """The :class:`~catga_bench.targets.served.blackbox.BlackBoxServer` ``--asyncapi`` asks
    for, or None after one line on stderr (a usage error)."""
    from catga_bench.targets.served.blackbox import BlackBoxServer
    from catga_bench.workload.asyncapi import load_spec

    try:
        if args.transport != "nats":
            raise ConfigError("--asyncapi: the black-box core speaks NATS only "
                              "(--transport nats)")
        if len(scenarios) != 1:
            raise ConfigError("--asyncapi needs exactly one scenario (--scenario FILE) for "
                              f"its handlers; found {len(scenarios)}: "
                              f"{', '.join(sorted(scenarios)) or 'none'}")
        [scenario] = scenarios.values()
        return BlackBoxServer(transport, load_spec(args.asyncapi), scenario, qos=args.qos,
                              defects=defects, max_in_flight=args.max_in_flight)
    except (ConfigError, ValueError, OSError) as exc:
        sys.stderr.write(f"catga-bench serve: error: {exc}\n")
        return None


def _scenario_dirs(raw: Path | None) -> list[Path]:
    """``--scenarios``: that directory when it is one; by default ./scenarios, else the shipped
    scenarios; none when neither exists (only ``--scenario`` files are served then)."""
    if raw is not None:
        return [raw] if raw.is_dir() else []
    try:
        return [local_or_shipped("scenarios")]
    except FileNotFoundError:
        return []


def main(argv: list[str] | None = None) -> int:
    """``catga-bench serve``; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                                                   "%(message)s")
    # black box: --scenario only; else the directory's, then the --scenario files (a file
    # named on the command line wins over a directory's scenario of the same name)
    paths = [*(_scenario_dirs(args.scenarios) if args.asyncapi is None else []), *args.scenario]
    try:
        scenarios = load_scenarios(paths)
    except (ValueError, OSError, SyntaxError) as exc:
        sys.stderr.write(f"catga-bench serve: error: {exc}\n")
        return EXIT_USAGE
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    return int(runner(_amain(args, scenarios)))
