"""Node discovery (core.cluster.discovery) against private redis-server / nats-server brokers,
plus the in-memory backend with a fake clock. Plain sync tests driving ``asyncio.run``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from _support import free_port

from catga_bench.processes.brokers import BrokerProcess
from core.cluster.discovery import (
    Discovery,
    InMemoryDiscovery,
    InMemoryRegistry,
    NatsKvDiscovery,
    RedisDiscovery,
)
from core.cluster.routing import ConsistentHash, NodeInfo
from core.transport.base import BrokerUnavailable

TTL_S = 1.0


def _loop() -> asyncio.AbstractEventLoop:
    """An asyncio loop on the standard library's selector, whatever gevent has patched.

    Discovery runs in processes without gevent (``catga-bench serve``) or on the harness's
    uvloop thread; in this test process, the first test that imports Locust monkey-patches
    ``selectors``, and a loop on gevent's selector, with the test's blocking broker restart
    running gevent's hub under it, hung for pytest-timeout's 300 s in 2 of 5 CI runs (the Redis
    restart test: three failed heartbeats logged, then nothing). Nothing here uses a thread
    executor (numeric addresses, no getaddrinfo), which such a loop could not run behind Locust's
    patched threading."""
    import gevent.monkey

    return asyncio.SelectorEventLoop(gevent.monkey.get_original("selectors", "DefaultSelector")())


def run(coro: Awaitable[Any], timeout_s: float = 120.0) -> Any:
    """Run ``coro`` on :func:`_loop`, bounded: pytest-timeout's SIGALRM is delivered through
    gevent's hub once Locust has patched ``signal``, and this loop never runs that hub."""
    with asyncio.Runner(loop_factory=_loop) as runner:
        return runner.run(asyncio.wait_for(coro, timeout_s))


def node(node_id: str, load: float = 0.0, zone: str = "") -> NodeInfo:
    return NodeInfo(node_id, f"catga.node.{node_id}", load=load, zone=zone)


Factory = Callable[..., Discovery]


@pytest.fixture(params=["redis", "nats"])
def backend(request: pytest.FixtureRequest) -> tuple[str, Factory]:
    """(name, factory) where ``factory(ttl_s=..)`` opens a discovery on a fresh broker."""
    kind: str = request.param
    broker: BrokerProcess = request.getfixturevalue(f"{kind}_server")

    def factory(ttl_s: float = TTL_S, **kw: Any) -> Discovery:
        if kind == "redis":
            return RedisDiscovery(broker.url, ttl_s=ttl_s, **kw)
        return NatsKvDiscovery(broker.url, ttl_s=ttl_s, api_timeout_s=1.0, **kw)

    return kind, factory


def ids(nodes: list[NodeInfo]) -> list[str]:
    return [n.node_id for n in nodes]


# -- brokers -----------------------------------------------------------------------------------


def test_two_registered_nodes_are_listed(backend: tuple[str, Factory]) -> None:
    _, factory = backend

    async def main() -> None:
        async with factory() as a, factory() as b:
            assert await a.nodes() == []
            await a.register(node("node-a", load=0.25, zone="eu-1"))
            await b.register(node("node-b"))
            listed = await b.nodes()
            assert ids(listed) == ["node-a", "node-b"]
            first = listed[0]
            assert (first.address, first.load, first.zone) == ("catga.node.node-a", 0.25, "eu-1")
            for n in listed:  # the backend's clock, in Unix seconds
                assert abs(n.last_seen_unix_s - time.time()) < 5
            assert ids(await a.nodes()) == ids(listed)  # every member sees the same view
            # Routing over what discovery lists.
            assert ConsistentHash().choose("order-1", listed).node_id in ids(listed)
        # close() deregistered both.
        async with factory() as c:
            assert await c.nodes() == []

    run(main())


def test_heartbeat_updates_load_and_last_seen(backend: tuple[str, Factory]) -> None:
    _, factory = backend

    async def main() -> None:
        async with factory() as d:
            await d.register(node("node-a", load=0.1))
            before = (await d.nodes())[0]
            await asyncio.sleep(0.05)
            await d.heartbeat(load=0.8)
            after = (await d.nodes())[0]
            assert before.load == 0.1 and after.load == 0.8
            assert after.last_seen_unix_s > before.last_seen_unix_s
            await d.heartbeat()  # None keeps the last load
            assert (await d.nodes())[0].load == 0.8
            assert d.local_node is not None and d.local_node.load == 0.8
            with pytest.raises(ValueError, match="load"):
                await d.heartbeat(load=-1)

    run(main())


def test_silent_node_expires_after_ttl_while_heartbeating_node_stays(
        backend: tuple[str, Factory]) -> None:
    _, factory = backend

    async def main() -> None:
        async with factory() as alive, factory() as silent:
            await alive.register(node("alive"))
            alive.start_heartbeats(0.2)
            await silent.register(node("silent"))
            last_beat = time.monotonic()
            await asyncio.sleep(TTL_S * 0.6)
            assert ids(await alive.nodes()) == ["alive", "silent"]
            while "silent" in ids(await alive.nodes()):
                assert time.monotonic() - last_beat < TTL_S + 1.0, "silent node never expired"
                await asyncio.sleep(0.05)
            gone_after = time.monotonic() - last_beat
            # not long before its TTL (nats-server's expiry timer is coarse: seen at 0.77 TTL
            # on a loaded machine), never long after it (the loop above)
            assert gone_after >= TTL_S * 0.5, gone_after
            assert ids(await silent.nodes()) == ["alive"]  # kept alive by the background task
            assert alive.heartbeats >= 4 and alive.heartbeat_failures == 0
            await silent.close(deregister=False)

    run(main())


def test_deregister_removes_at_once(backend: tuple[str, Factory]) -> None:
    _, factory = backend

    async def main() -> None:
        async with factory(ttl_s=30.0) as a, factory(ttl_s=30.0) as b:
            await a.register(node("node-a"))
            a.start_heartbeats(1.0)
            await b.register(node("node-b"))
            await a.deregister()
            assert ids(await b.nodes()) == ["node-b"]
            assert a.local_node is None
            await asyncio.sleep(0)  # the heartbeat task is gone, nothing re-registers node-a
            assert ids(await b.nodes()) == ["node-b"]

    run(main())


@pytest.mark.parametrize("kind", ["redis", "nats"])
def test_unreachable_broker_raises_broker_unavailable(kind: str) -> None:
    url = f"{kind}://127.0.0.1:{free_port()}"
    d: Discovery = (RedisDiscovery(url, connect_timeout_s=1.0) if kind == "redis"
                    else NatsKvDiscovery(url, connect_timeout_s=1.0))

    async def main() -> None:
        async with d:
            pytest.fail("connected to nothing")

    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as info:
        run(main())
    assert info.value.url == url
    assert time.monotonic() - started < 5


def test_redis_broker_gone_heartbeat_raises_and_background_loop_survives(
        redis_server: BrokerProcess) -> None:
    async def main() -> None:
        async with RedisDiscovery(redis_server.url, ttl_s=TTL_S, op_timeout_s=0.5) as d:
            await d.register(node("node-a"))
            d.start_heartbeats(0.1)
            redis_server.kill()
            with pytest.raises(BrokerUnavailable):
                await d.heartbeat()
            await asyncio.sleep(0.35)
            assert d.heartbeat_failures >= 2
            redis_server.start()
            await asyncio.sleep(0.3)  # the loop reconnects and re-announces the node
            assert ids(await d.nodes()) == ["node-a"]

    run(main())


def test_nats_broker_gone_heartbeat_raises_then_resumes_after_restart(
        nats_server: BrokerProcess) -> None:
    async def main() -> None:
        async with NatsKvDiscovery(nats_server.url, ttl_s=5.0, api_timeout_s=0.3,
                                   reconnect_wait_s=0.1) as d:
            await d.register(node("node-a"))
            nats_server.kill()
            with pytest.raises(BrokerUnavailable):
                await d.heartbeat()
            with pytest.raises(BrokerUnavailable):
                await d.nodes()
            nats_server.start()  # same store dir: the bucket survives
            d.start_heartbeats(0.1)
            deadline = time.monotonic() + 3
            while d.heartbeats < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert ids(await d.nodes()) == ["node-a"]

    run(main())


def test_nats_bucket_deleted_under_us_is_recreated(nats_server: BrokerProcess) -> None:
    import nats

    async def main() -> None:
        async with NatsKvDiscovery(nats_server.url, bucket="gone", ttl_s=TTL_S) as d:
            await d.register(node("node-a"))
            nc = await nats.connect(nats_server.url)
            try:
                assert await nc.jetstream().delete_key_value("gone")
            finally:
                await nc.close()
            await d.heartbeat()
            assert ids(await d.nodes()) == ["node-a"]

    run(main())


def test_existing_clients_are_used_and_left_open(redis_server: BrokerProcess,
                                                 nats_server: BrokerProcess) -> None:
    import nats
    import redis.asyncio as redis_asyncio

    async def main() -> None:
        rc = redis_asyncio.Redis.from_url(redis_server.url, decode_responses=True)
        nc = await nats.connect(nats_server.url)
        try:
            for d in (RedisDiscovery(rc, ttl_s=5), NatsKvDiscovery(nc, ttl_s=5)):
                async with d:
                    await d.register(node("node:with spaces/é"))  # not a valid KV key as is
                    assert ids(await d.nodes()) == ["node:with spaces/é"]
            assert await rc.ping()
            assert nc.is_connected
        finally:
            await rc.aclose()
            await nc.close()

    run(main())


def test_nats_existing_bucket_ttl_wins(nats_server: BrokerProcess) -> None:
    async def main() -> None:
        async with NatsKvDiscovery(nats_server.url, bucket="shared", ttl_s=3.0):
            pass
        async with NatsKvDiscovery(nats_server.url, bucket="shared", ttl_s=7.0) as d:
            assert d.ttl_s == 3.0

    run(main())


# -- in memory ---------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_in_memory_shared_registry_ttl_and_deregister() -> None:
    clock = FakeClock()
    registry = InMemoryRegistry()

    async def main() -> None:
        a = InMemoryDiscovery(registry, ttl_s=10, clock=clock)
        b = InMemoryDiscovery(registry, ttl_s=10, clock=clock)
        await a.register(node("a"))
        await b.register(node("b", load=0.5))
        assert ids(await a.nodes()) == ["a", "b"]
        assert (await a.nodes())[0].last_seen_unix_s == clock.t
        clock.t += 6
        await a.heartbeat(load=0.3)
        clock.t += 4.5  # b last seen 10.5 s ago, a 4.5 s ago
        listed = await b.nodes()
        assert ids(listed) == ["a"] and listed[0].load == 0.3
        assert "b" not in registry.entries  # expired entries are dropped
        await a.deregister()
        assert await b.nodes() == []

    run(main())


def test_in_memory_misuse_errors_and_background_heartbeats() -> None:
    async def main() -> None:
        d = InMemoryDiscovery(ttl_s=0.5)
        with pytest.raises(RuntimeError, match="register"):
            await d.heartbeat()
        with pytest.raises(RuntimeError, match="register"):
            d.start_heartbeats()
        await d.register(node("a"))
        with pytest.raises(ValueError, match="interval_s"):
            d.start_heartbeats(0.5)
        d.start_heartbeats(0.05, load=lambda: 0.42)
        with pytest.raises(RuntimeError, match="already running"):
            d.start_heartbeats(0.05)
        await asyncio.sleep(0.8)  # longer than the TTL: the heartbeats keep it alive
        listed = await d.nodes()
        assert ids(listed) == ["a"] and listed[0].load == 0.42
        assert d.heartbeats >= 10
        await d.close()
        assert await d.nodes() == []

    run(main())
    with pytest.raises(ValueError, match="ttl_s"):
        InMemoryDiscovery(ttl_s=0)
