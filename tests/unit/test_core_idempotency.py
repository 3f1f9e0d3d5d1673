"""In-memory idempotency store: claim/complete/abort, TTL, size bound, concurrent duplicates."""

from __future__ import annotations

import asyncio

import pytest

from core import InMemoryIdempotencyStore, Result


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def run(coro):
    return asyncio.run(coro)


def test_first_claim_then_cached_result():
    async def main():
        store = InMemoryIdempotencyStore()
        assert await store.begin("k") is None
        done = Result.success(7)
        store.complete("k", done)
        return store, done, await store.begin("k"), await store.begin("k")

    store, done, again, third = run(main())
    assert again is done
    assert third is done
    assert (store.hits, store.misses) == (2, 1)


def test_completed_key_expires_after_ttl():
    clock = FakeClock()

    async def main():
        store = InMemoryIdempotencyStore(ttl_s=10.0, clock=clock)
        assert await store.begin("k") is None
        store.complete("k", Result.success("v"))
        clock.t += 10.0  # exactly at the TTL: still remembered
        at_ttl = await store.begin("k")
        clock.t += 0.001
        after_ttl = await store.begin("k")  # forgotten: the caller owns the key again
        return store, at_ttl, after_ttl

    store, at_ttl, after_ttl = run(main())
    assert at_ttl is not None
    assert at_ttl.value == "v"
    assert after_ttl is None
    assert store.misses == 2


def test_in_flight_key_does_not_expire():
    clock = FakeClock()

    async def main():
        store = InMemoryIdempotencyStore(ttl_s=1.0, clock=clock)
        assert await store.begin("k") is None
        clock.t += 100.0
        dup = asyncio.create_task(store.begin("k"))
        await asyncio.sleep(0)
        waiting = not dup.done()
        store.complete("k", Result.success(1))
        return waiting, await dup

    waiting, got = run(main())
    assert waiting  # the first copy is still in flight: the duplicate waits for it
    assert got.value == 1


def test_max_entries_evicts_the_oldest():
    async def main():
        store = InMemoryIdempotencyStore(max_entries=2)
        for key in ("a", "b"):
            assert await store.begin(key) is None
            store.complete(key, Result.success(key))
        assert await store.begin("c") is None  # evicts "a"
        store.complete("c", Result.success("c"))
        evictions = store.evictions
        size = len(store)
        b_cached = await store.begin("b")  # the newer key survived
        return evictions, size, b_cached

    evictions, size, b_cached = run(main())
    assert evictions == 1
    assert size == 2
    assert b_cached is not None
    assert b_cached.value == "b"


def test_evicted_key_can_be_claimed_again():
    async def main():
        store = InMemoryIdempotencyStore(max_entries=2)
        for key in ("a", "b", "c"):
            assert await store.begin(key) is None
            store.complete(key, Result.success(key))
        return store, await store.begin("a")

    store, a_again = run(main())
    assert a_again is None  # "a" was evicted: its next delivery is treated as new
    assert len(store) <= 2


def test_expired_entries_are_dropped_before_evicting_live_ones():
    clock = FakeClock()

    async def main():
        store = InMemoryIdempotencyStore(max_entries=2, ttl_s=1.0, clock=clock)
        assert await store.begin("old") is None
        store.complete("old", Result.success(0))
        clock.t += 5.0
        assert await store.begin("x") is None
        store.complete("x", Result.success(1))
        assert await store.begin("y") is None
        store.complete("y", Result.success(2))
        return store, await store.begin("x")

    store, x = run(main())
    assert store.evictions == 0  # "old" had expired: dropped, not evicted
    assert x.value == 1


def test_concurrent_duplicate_waits_for_first_and_gets_its_result():
    async def main():
        store = InMemoryIdempotencyStore()
        assert await store.begin("k") is None
        dups = [asyncio.create_task(store.begin("k")) for _ in range(3)]
        await asyncio.sleep(0.01)
        still_waiting = [not d.done() for d in dups]
        first = Result.success("first")
        store.complete("k", first)
        return store, first, still_waiting, await asyncio.gather(*dups)

    store, first, still_waiting, got = run(main())
    assert still_waiting == [True, True, True]
    assert all(r is first for r in got)
    assert store.hits == 3


def test_if_the_first_aborts_one_duplicate_claims_the_key():
    async def main():
        store = InMemoryIdempotencyStore()
        assert await store.begin("k") is None
        dups = [asyncio.create_task(store.begin("k")) for _ in range(3)]
        await asyncio.sleep(0)
        store.abort("k")  # the first copy failed
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        done = [d for d in dups if d.done()]
        claimed = [d for d in done if d.result() is None]
        # exactly one duplicate owns the key now; the others wait for it
        n_claimed = len(claimed)
        n_waiting = sum(1 for d in dups if not d.done())
        store.complete("k", Result.success("second"))
        results = await asyncio.gather(*dups)
        return n_claimed, n_waiting, results

    n_claimed, n_waiting, results = run(main())
    assert n_claimed == 1
    assert n_waiting == 2
    assert results.count(None) == 1
    assert [r.value for r in results if r is not None] == ["second", "second"]


def test_store_rejects_bad_arguments():
    with pytest.raises(ValueError):
        InMemoryIdempotencyStore(max_entries=0)
    with pytest.raises(ValueError):
        InMemoryIdempotencyStore(ttl_s=0)


def test_sharded_store_routes_each_key_to_one_shard_and_bounds_each_shard() -> None:
    from core.idempotency import ShardedIdempotencyStore

    async def main() -> None:
        store = ShardedIdempotencyStore(shards=4, max_entries=40)
        for k in range(200):
            assert await store.begin(k) is None
            store.complete(k, Result.success(k))
        assert len(store) <= 40 and all(len(s) <= 10 for s in store.shards)
        assert sum(1 for s in store.shards if len(s)) == 4  # keys spread over every shard
        assert store.misses == 200 and store.evictions == 160
        cached = await store.begin(199)  # the newest key survives in its shard
        assert cached is not None and cached.value == 199
        assert store.hits == 1

    asyncio.run(main())
