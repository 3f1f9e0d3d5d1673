"""What the fault proxy costs with no toxic: added latency and throughput, against a direct
connection to the same upstream, measured in the same run.

Method. The upstream (an echo/stream server) and the proxy (``python -m catga_bench.faultproxy``,
as ``catga-bench proxy`` runs it) are separate processes, so the proxy pays its own CPU as it
would in use; the client is this process, with blocking sockets and TCP_NODELAY.

* Latency: ping-pong, one message in flight (``message_bytes``, default 64 B), ``pings``
  round trips per path after a warm-up, in ``repeats`` blocks that alternate direct and
  proxied so that a noisy moment hurts both. Figures: P50 and P99 round-trip time (µs), the
  added P99 (proxied - direct, µs) and the P99 ratio (proxied / direct).
* Throughput: the upstream streams ``bulk_bytes`` to the client, which times the transfer
  from its request to the last byte; the median over the repeats (MB/s, 1 MB = 10^6 bytes)
  and the ratio proxied / direct.

Run it: ``python -m catga_bench.faultproxy.bench [--pings N] [--bulk-mb M] [--loop L]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import IO, Any

_ECHO = b"E"
_STREAM = b"S"
_IO_TIMEOUT_S = 20.0


@dataclass(slots=True)
class ProxyCost:
    """Measured cost of the proxy with no toxics (times in µs, rates in MB/s)."""

    loop: str
    pings: int
    message_bytes: int
    bulk_bytes: int
    direct_p50_us: float
    direct_p99_us: float
    proxied_p50_us: float
    proxied_p99_us: float
    direct_mb_s: float
    proxied_mb_s: float

    @property
    def added_p50_us(self) -> float:
        """Proxied minus direct P50 round trip, µs."""
        return self.proxied_p50_us - self.direct_p50_us

    @property
    def added_p99_us(self) -> float:
        """Proxied minus direct P99 round trip, µs."""
        return self.proxied_p99_us - self.direct_p99_us

    @property
    def p99_ratio(self) -> float:
        """Proxied / direct P99 round trip."""
        return self.proxied_p99_us / self.direct_p99_us

    @property
    def throughput_ratio(self) -> float:
        """Proxied / direct bulk throughput."""
        return self.proxied_mb_s / self.direct_mb_s

    def to_json(self) -> dict[str, Any]:
        """Every figure, derived ones included."""
        return {**asdict(self), "added_p50_us": self.added_p50_us,
                "added_p99_us": self.added_p99_us, "p99_ratio": self.p99_ratio,
                "throughput_ratio": self.throughput_ratio}

    def format(self) -> str:
        """A short human-readable report."""
        return (
            f"fault proxy cost, no toxics (proxy loop: {self.loop}; {self.pings} pings of "
            f"{self.message_bytes} B per path, {self.bulk_bytes / 1e6:.0f} MB bulk)\n"
            f"  round trip  direct   P50 {self.direct_p50_us:8.1f} us  "
            f"P99 {self.direct_p99_us:8.1f} us\n"
            f"              proxied  P50 {self.proxied_p50_us:8.1f} us  "
            f"P99 {self.proxied_p99_us:8.1f} us\n"
            f"              added    P50 {self.added_p50_us:8.1f} us  "
            f"P99 {self.added_p99_us:8.1f} us  (P99 ratio {self.p99_ratio:.2f}x)\n"
            f"  throughput  direct {self.direct_mb_s:8.1f} MB/s  proxied "
            f"{self.proxied_mb_s:8.1f} MB/s  (ratio {self.throughput_ratio:.2f})"
        )


# -- the upstream process ------------------------------------------------------------------


async def _upstream_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        mode = await reader.readexactly(1)
        if mode == _ECHO:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        elif mode == _STREAM:
            remaining = int.from_bytes(await reader.readexactly(8), "big")
            block = bytes(1 << 18)
            while remaining > 0:
                n = min(remaining, len(block))
                writer.write(block[:n] if n < len(block) else block)
                remaining -= n
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _serve_upstream() -> None:
    server = await asyncio.start_server(_upstream_handler, "127.0.0.1", 0)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def _run_loop(main: Any) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


# -- the client ------------------------------------------------------------------------------


def _read_line(stream: IO[str], pattern: str, proc: subprocess.Popen[str]) -> re.Match[str]:
    deadline = time.monotonic() + _IO_TIMEOUT_S
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            raise RuntimeError(f"process {proc.args!r} exited (code {proc.poll()})")
        match = re.search(pattern, line)
        if match:
            return match
    raise RuntimeError(f"process {proc.args!r} did not print {pattern!r}")


@contextlib.contextmanager
def _process(args: list[str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=_IO_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _ping_pong(port: int, count: int, warmup: int, message: bytes) -> list[float]:
    """Round-trip times (µs) of ``count`` pings, one in flight, after ``warmup`` pings."""
    out: list[float] = []
    buf = bytearray(len(message))
    view = memoryview(buf)
    with _connect(port) as sock:
        sock.sendall(_ECHO)
        for i in range(warmup + count):
            start = time.perf_counter_ns()
            sock.sendall(message)
            got = 0
            while got < len(message):
                n = sock.recv_into(view[got:])
                if n == 0:
                    raise ConnectionError("upstream closed during ping-pong")
                got += n
            if i >= warmup:
                out.append((time.perf_counter_ns() - start) / 1000.0)
    return out


def _bulk(port: int, nbytes: int) -> float:
    """MB/s of a ``nbytes`` transfer from the upstream to us."""
    buf = bytearray(1 << 20)
    with _connect(port) as sock:
        start = time.perf_counter()
        sock.sendall(_STREAM + nbytes.to_bytes(8, "big"))
        got = 0
        while got < nbytes:
            n = sock.recv_into(buf)
            if n == 0:
                raise ConnectionError(f"stream ended after {got} of {nbytes} bytes")
            got += n
        return nbytes / (time.perf_counter() - start) / 1e6


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100.0 * len(ordered))))
    return ordered[rank - 1]


def measure_proxy_cost(
    pings: int = 5000,
    bulk_bytes: int = 128 * 1_000_000,
    *,
    repeats: int = 3,
    message_bytes: int = 64,
    loop: str = "auto",
) -> ProxyCost:
    """Measure the proxy's added latency and throughput with no toxics (see module doc).

    ``loop`` is the proxy's event loop (``auto``: uvloop when installed, as
    ``catga-bench proxy``; ``asyncio``; ``uvloop``). Takes about a second plus the transfers.
    """
    py = sys.executable
    with _process([py, "-m", "catga_bench.faultproxy.bench", "--serve-upstream"]) as up, \
            _process([py, "-m", "catga_bench.faultproxy", "--port", "0", "--loop", loop]) as px:
        assert up.stdout is not None and px.stdout is not None
        upstream_port = int(_read_line(up.stdout, r"^PORT (\d+)", up).group(1))
        api = _read_line(px.stdout, r"(http://[\d.]+:\d+)", px).group(1)
        request = urllib.request.Request(
            f"{api}/proxies", method="POST",
            data=json.dumps({"name": "bench", "listen": "127.0.0.1:0",
                             "upstream": f"127.0.0.1:{upstream_port}"}).encode())
        with urllib.request.urlopen(request, timeout=_IO_TIMEOUT_S) as response:
            listen = json.loads(response.read())["listen"]
        proxy_port = int(listen.rsplit(":", 1)[1])

        message = bytes(range(256)) * (message_bytes // 256) + bytes(message_bytes % 256)
        blocks = [pings // repeats + (1 if i < pings % repeats else 0) for i in range(repeats)]
        warmup = min(200, max(blocks))
        rtts: dict[str, list[float]] = {"direct": [], "proxied": []}
        rates: dict[str, list[float]] = {"direct": [], "proxied": []}
        ports = {"direct": upstream_port, "proxied": proxy_port}
        for block in blocks:
            for path, port in ports.items():
                rtts[path] += _ping_pong(port, max(1, block), warmup, message)
            for path, port in ports.items():
                rates[path].append(_bulk(port, bulk_bytes))
        kind = loop
        if loop == "auto":
            try:
                import uvloop  # noqa: F401
            except ImportError:
                kind = "asyncio"
            else:
                kind = "uvloop"
        return ProxyCost(
            loop=kind,
            pings=len(rtts["proxied"]),
            message_bytes=message_bytes,
            bulk_bytes=bulk_bytes,
            direct_p50_us=_percentile(rtts["direct"], 50),
            direct_p99_us=_percentile(rtts["direct"], 99),
            proxied_p50_us=_percentile(rtts["proxied"], 50),
            proxied_p99_us=_percentile(rtts["proxied"], 99),
            direct_mb_s=statistics.median(rates["direct"]),
            proxied_mb_s=statistics.median(rates["proxied"]),
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m catga_bench.faultproxy.bench``: print the proxy's cost; returns 0."""
    parser = argparse.ArgumentParser(prog="python -m catga_bench.faultproxy.bench",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pings", type=int, default=5000, help="round trips per path")
    parser.add_argument("--bulk-mb", type=int, default=128, help="MB per bulk transfer")
    parser.add_argument("--repeats", type=int, default=3, help="alternating blocks")
    parser.add_argument("--message-bytes", type=int, default=64, help="ping size, bytes")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                        help="the proxy's event loop")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_upstream:
        _run_loop(_serve_upstream())
        return 0
    cost = measure_proxy_cost(args.pings, args.bulk_mb * 1_000_000, repeats=args.repeats,
                              message_bytes=args.message_bytes, loop=args.loop)
    print(json.dumps(cost.to_json(), indent=2) if args.json else cost.format())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
