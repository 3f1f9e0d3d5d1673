"""``catga-bench proxy``: run the fault proxy in the foreground.

Prints where the API listens and serves until Ctrl-C (SIGINT) or SIGTERM, then closes every
proxy and connection. Exit codes: 0 stopped cleanly, 2 bad arguments or config file, 3 the API
port could not be bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from catga_bench.faultproxy.server import DEFAULT_HOST, DEFAULT_PORT, FaultProxyServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="catga-bench proxy",
        description="TCP fault proxy speaking the Toxiproxy v2 HTTP API (toxiproxy-python, "
                    "chaostoolkit-toxiproxy and toxiproxy-cli work with it). See "
                    "docs/faultproxy.md.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="API address to bind (default %(default)s: loopback only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="API port (default %(default)s; 0 picks a free one)")
    parser.add_argument("--config", metavar="FILE",
                        help="JSON array of proxies to create at start (as POST /populate)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for toxicity and jitter draws (reproducible runs)")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                        help="event loop (auto: uvloop when installed)")
    return parser


async def _serve(args: argparse.Namespace) -> int:
    server = FaultProxyServer(args.host, args.port, seed=args.seed)
    try:
        await server.start()
    except OSError as exc:
        print(f"catga-bench proxy: error: cannot listen on {args.host}:{args.port}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 3
    try:
        if args.config:
            try:
                proxies = await server.populate(args.config)
            except (OSError, ValueError) as exc:
                print(f"catga-bench proxy: error: --config: {exc}", file=sys.stderr)
                return 2
            for proxy in proxies:
                state = "enabled" if proxy.enabled else "disabled"
                print(f"proxy {proxy.name}: {proxy.listen} -> {proxy.upstream} ({state})")
        print(f"catga-bench proxy: Toxiproxy API listening on {server.url} "
              "(Ctrl-C to stop)", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        return 0
    finally:
        await server.close()


def _run(args: argparse.Namespace) -> int:
    if args.loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if args.loop == "uvloop":
                print("catga-bench proxy: error: --loop uvloop: uvloop is not installed",
                      file=sys.stderr)
                return 2
        else:
            return uvloop.run(_serve(args))
    return asyncio.run(_serve(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``catga-bench proxy``; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
