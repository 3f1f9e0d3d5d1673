"""Findings about the brokers themselves, measured: does kill -9 of the broker process lose
messages it had acknowledged? (docs/transports.md, "Broker findings")."""

from __future__ import annotations

import asyncio

from catga_bench.processes.brokers import BrokerProcess


async def _publish_until_killed(publish, broker: BrokerProcess) -> int:
    """Publish with acknowledgements (64 in flight) and kill -9 the broker mid-stream; return
    how many publishes were acknowledged."""
    acked = 0

    async def one(i: int) -> None:
        nonlocal acked
        await publish(i)
        acked += 1

    async def producer() -> None:
        i = 0
        while True:
            await asyncio.gather(*(one(i + k) for k in range(64)), return_exceptions=True)
            i += 64

    task = asyncio.create_task(producer())
    await asyncio.sleep(1.0)
    broker.kill()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return acked


def test_nats_kill_9_keeps_every_acknowledged_jetstream_message(nats_server: BrokerProcess
                                                                ) -> None:
    import nats

    async def main() -> tuple[int, int]:
        nc = await nats.connect(nats_server.url, allow_reconnect=False)
        js = nc.jetstream()
        await js.add_stream(name="FINDING", subjects=["finding.>"])
        acked = await _publish_until_killed(
            lambda i: js.publish("finding.x", b"x" * 100, headers={"Nats-Msg-Id": str(i)}),
            nats_server)
        await nc.close()
        nats_server.start()
        nc = await nats.connect(nats_server.url)
        stored = (await nc.jetstream().stream_info("FINDING")).state.messages
        await nc.close()
        return acked, stored

    acked, stored = asyncio.run(main())
    assert acked > 1000
    # the process died, the OS did not: written pages survive without fsync (an OS crash or
    # power loss is what `sync_interval: always`, nats-server >= 2.10, protects against)
    assert stored >= acked, (acked, stored)


def test_redis_kill_9_keeps_every_acknowledged_xadd_with_appendfsync_always(
        redis_server: BrokerProcess) -> None:
    import redis.asyncio as aioredis

    async def main() -> tuple[int, int]:
        r = aioredis.from_url(redis_server.url, max_connections=256)
        acked = await _publish_until_killed(
            lambda i: r.xadd("finding", {"i": str(i)}), redis_server)
        await r.aclose()
        redis_server.start()
        r = aioredis.from_url(redis_server.url)
        stored = await r.xlen("finding")
        await r.aclose()
        return acked, stored

    acked, stored = asyncio.run(main())
    assert acked > 1000
    assert stored >= acked, (acked, stored)
