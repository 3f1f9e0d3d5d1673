"""A NATS echo: every message on catga.echo.in is published unchanged (payload and headers,
so the correlation id too) on catga.echo.out. The no-op system of the generator's ceiling over
NATS (nats-echo.asyncapi.yaml starts it). Env: NATS_URL (default nats://127.0.0.1:4222)."""

from __future__ import annotations

import asyncio
import os
import signal

import nats

IN, OUT = "catga.echo.in", "catga.echo.out"


async def main() -> None:
    nc = await nats.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"),
                            pending_size=64 * 1024 * 1024)

    async def echo(msg: nats.aio.msg.Msg) -> None:
        await nc.publish(OUT, msg.data, headers=msg.headers)

    await nc.subscribe(IN, cb=echo, pending_msgs_limit=1_000_000,
                       pending_bytes_limit=256 * 1024 * 1024)
    await nc.flush()
    print("nats-echo ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await nc.drain()


if __name__ == "__main__":
    asyncio.run(main())
