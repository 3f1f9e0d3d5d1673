"""RedisIdempotencyStore against a private redis-server: claim / complete / abort, cached
results (value and error round trip), concurrent duplicates waiting for the first (in one store
and across two stores = two processes' view), TTL and lease expiry, and the mediator's QoS 2
path using it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
from _support import free_port

from catga_bench.processes.brokers import BrokerProcess
from core.idempotency_redis import RedisIdempotencyStore
from core.mediator import Mediator
from core.messages import QoS, Request, new_message_id
from core.result import ErrorCode, Result
from core.transport.base import BrokerUnavailable


def run(main: Callable[[], Awaitable[None]], timeout_s: float = 20.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(main(), timeout_s)

    asyncio.run(bounded())


@dataclass(slots=True)
class Double(Request):
    x: int = 0


def test_claim_complete_then_duplicates_get_the_cached_result(
        redis_server_module: BrokerProcess) -> None:
    value = {"order": "o-1", "lines": [1, 2.5, "ü", None, True], "n": 2**62}

    async def main() -> None:
        async with RedisIdempotencyStore(redis_server_module.url,
                                         key_prefix="t1:") as store:
            assert await store.begin(42) is None
            store.complete(42, Result.success(value))
            local = await store.begin(42)  # answered locally while the write may be in flight
            await store.flush()
            remote = await store.begin(42)  # from Redis
            assert local is not None and remote is not None
            assert local.ok and local.value == value
            assert remote.ok and remote.value == value
            assert (store.hits, store.misses) == (2, 1)
            client = aioredis.Redis.from_url(redis_server_module.url)
            try:
                ttl = await client.pttl("t1:42")
                assert 0 < ttl <= 600_000
            finally:
                await client.aclose()

    run(main)


def test_failure_results_and_unserialisable_values_round_trip(
        redis_server_module: BrokerProcess) -> None:
    async def main() -> None:
        async with RedisIdempotencyStore(redis_server_module.url, key_prefix="t2:") as store:
            assert await store.begin("err") is None
            store.complete("err", Result.failure(ErrorCode.TIMEOUT, "slow", retryable=True))
            assert await store.begin("odd") is None
            store.complete("odd", Result.success(object()))
            assert await store.begin("none") is None
            store.complete("none", Result.OK)
            await store.flush()
        async with RedisIdempotencyStore(redis_server_module.url, key_prefix="t2:") as other:
            err = await other.begin("err")
            assert err is not None and err.error is not None
            assert (err.error.code, err.error.message, err.error.retryable) == (
                ErrorCode.TIMEOUT, "slow", True)
            odd = await other.begin("odd")
            assert odd is not None and odd.ok and odd.value is None
            none = await other.begin("none")
            assert none is not None and none.ok and none.value is None
        assert store.unserialisable == 1

    run(main)


def test_abort_releases_the_key(redis_server_module: BrokerProcess) -> None:
    async def main() -> None:
        async with RedisIdempotencyStore(redis_server_module.url, key_prefix="t3:") as store, \
                RedisIdempotencyStore(redis_server_module.url, key_prefix="t3:") as other:
            assert await store.begin("k") is None
            store.abort("k")
            assert await store.begin("k") is None  # claimed again, same store
            store.abort("k")
            await store.flush()
            assert await other.begin("k") is None  # and from another "process"
            other.complete("k", Result.success(1))
            await other.flush()
            cached = await store.begin("k")
            assert cached is not None and cached.value == 1
            assert store.misses == 2 and other.misses == 1

    run(main)


def test_concurrent_duplicates_wait_for_the_first_in_one_store(
        redis_server_module: BrokerProcess) -> None:
    async def main() -> None:
        async with RedisIdempotencyStore(redis_server_module.url, key_prefix="t4:") as store:
            assert await store.begin("k") is None
            waiters = [asyncio.create_task(store.begin("k")) for _ in range(5)]
            await asyncio.sleep(0.1)
            assert not any(w.done() for w in waiters)
            store.complete("k", Result.success("first"))
            results = await asyncio.gather(*waiters)
            assert [r.value for r in results if r is not None] == ["first"] * 5

            # a failed first attempt lets exactly one waiter claim the key
            assert await store.begin("j") is None
            waiters = [asyncio.create_task(store.begin("j")) for _ in range(3)]
            await asyncio.sleep(0.05)
            store.abort("j")
            await asyncio.sleep(0.1)
            done = [w for w in waiters if w.done()]
            assert len(done) == 1 and done[0].result() is None
            store.complete("j", Result.success("second"))
            rest = await asyncio.gather(*waiters)
            assert sorted(r.value for r in rest if r is not None) == ["second", "second"]

    run(main)


def test_concurrent_duplicate_in_another_store_waits_for_the_first(
        redis_server_module: BrokerProcess) -> None:
    async def main() -> None:
        async with RedisIdempotencyStore(redis_server_module.url, key_prefix="t5:") as a, \
                RedisIdempotencyStore(redis_server_module.url, key_prefix="t5:") as b:
            assert await a.begin("k") is None
            waiter = asyncio.create_task(b.begin("k"))
            await asyncio.sleep(0.2)
            assert not waiter.done()
            a.complete("k", Result.success({"v": 3}))
            got = await asyncio.wait_for(waiter, 2)
            assert got is not None and got.value == {"v": 3} and b.hits == 1

            assert await a.begin("j") is None
            waiter = asyncio.create_task(b.begin("j"))
            await asyncio.sleep(0.1)
            a.abort("j")
            assert await asyncio.wait_for(waiter, 2) is None  # b owns it now
            assert b.misses == 1

    run(main)


def test_completed_keys_expire_after_the_ttl(redis_server_module: BrokerProcess) -> None:
    async def main() -> None:
        async with RedisIdempotencyStore(redis_server_module.url, key_prefix="t6:",
                                         ttl_s=0.3) as store:
            assert await store.begin("k") is None
            store.complete("k", Result.success(1))
            await store.flush()
            assert await store.begin("k") is not None
            await asyncio.sleep(0.45)
            assert await store.begin("k") is None  # forgotten: a new first delivery

    run(main)


def test_a_dead_owners_lease_expires(redis_server_module: BrokerProcess) -> None:
    async def main() -> None:
        async with RedisIdempotencyStore(redis_server_module.url, key_prefix="t7:",
                                         lease_s=0.3) as dead, \
                RedisIdempotencyStore(redis_server_module.url, key_prefix="t7:") as alive:
            assert await dead.begin("k") is None  # ... and never completes
            t0 = time.monotonic()
            assert await asyncio.wait_for(alive.begin("k"), 3) is None
            assert time.monotonic() - t0 >= 0.2
            dead.abort("k")  # too late: must not free alive's claim
            await dead.flush()
            client = aioredis.Redis.from_url(redis_server_module.url)
            try:
                assert await client.exists("t7:k") == 1
            finally:
                await client.aclose()

    run(main)


def test_mediator_qos2_runs_a_request_once_across_two_processes(
        redis_server_module: BrokerProcess) -> None:
    calls = 0

    async def double(req: Double) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return req.x * 2

    async def main() -> None:
        async with RedisIdempotencyStore(redis_server_module.url, key_prefix="t8:") as s1, \
                RedisIdempotencyStore(redis_server_module.url, key_prefix="t8:") as s2:
            m1, m2 = Mediator(idempotency=s1), Mediator(idempotency=s2)
            m1.register(Double, double)
            m2.register(Double, double)
            mid = new_message_id()

            def req() -> Double:
                return Double(x=21, message_id=mid, qos=QoS.EXACTLY_ONCE)

            results: list[Result[Any]] = await asyncio.gather(
                *(m.send(req()) for m in (m1, m2, m1, m2)))
            await s1.flush()
            later = await m2.send(req())
            assert [r.value for r in [*results, later]] == [42] * 5
            assert calls == 1

    run(main)


def test_unreachable_redis_raises_broker_unavailable() -> None:
    async def main() -> None:
        url = f"redis://127.0.0.1:{free_port()}"
        async with RedisIdempotencyStore(url) as store:
            with pytest.raises(BrokerUnavailable):
                await store.begin("k")

    run(main)


def test_arguments_are_validated() -> None:
    for kwargs, name in [({"ttl_s": 0}, "ttl_s"), ({"lease_s": -1}, "lease_s")]:
        with pytest.raises(ValueError, match=name):
            RedisIdempotencyStore("redis://127.0.0.1:1", **kwargs)
    with pytest.raises(ValueError, match="client_or_url"):
        RedisIdempotencyStore("http://nope")
