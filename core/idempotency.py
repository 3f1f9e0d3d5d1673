"""Idempotency store for exactly-once (QoS 2) processing.

A key (a message id, or ``message_id:handler`` for event fan-out) moves through three states:
absent -> in flight -> done (holding the cached ``Result``). A duplicate that arrives while the
first copy is in flight waits for it: if the first succeeds the duplicate gets the cached result
and its handler does not run; if the first fails the key is released and the duplicate runs.
Failed attempts are never cached, so at-least-once retries still happen.

This in-memory store is bounded (``max_entries``, oldest evicted first) and forgets keys after
``ttl_s``: exactly-once holds for duplicates that arrive within the TTL, as with Catga's
``IIdempotencyStore`` and NATS JetStream's duplicate window.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Protocol

from core.result import Result


class IdempotencyStore(Protocol):
    """The seam every idempotency store implements (in-memory here; Redis later)."""

    async def begin(self, key: Hashable) -> Result[Any] | None:
        """Claim ``key``. Return None if the caller now owns it (it must later call
        :meth:`complete` or :meth:`abort`), or the cached ``Result`` of an earlier success."""
        ...

    def complete(self, key: Hashable, result: Result[Any]) -> None:
        """Record the successful result for ``key`` (releases waiting duplicates)."""
        ...

    def abort(self, key: Hashable) -> None:
        """Release ``key`` after a failure, so a retry or a redelivery may run."""
        ...


class InMemoryIdempotencyStore:
    """Bounded, TTL-expiring store for one event loop.

    Args:
        max_entries: keys kept at most (oldest evicted first).
        ttl_s: seconds a completed key is remembered.
        clock: monotonic clock in seconds.

    Attributes:
        hits: duplicates suppressed. misses: first deliveries. evictions: keys dropped for size.
    """

    def __init__(
        self,
        max_entries: int = 1_000_000,
        ttl_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        # key -> (expires_at, Result | Future[Result | None])
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def begin(self, key: Hashable) -> Result[Any] | None:
        while True:
            entry = self._entries.get(key)
            now = self._clock()
            if entry is not None and entry[0] < now and isinstance(entry[1], Result):
                del self._entries[key]
                entry = None
            if entry is None:
                self._evict(now)
                fut: asyncio.Future[Result[Any] | None] = (
                    asyncio.get_running_loop().create_future()
                )
                self._entries[key] = (float("inf"), fut)
                self.misses += 1
                return None
            state = entry[1]
            if isinstance(state, Result):
                self.hits += 1
                return state
            outcome = await asyncio.shield(state)
            if outcome is not None:
                self.hits += 1
                return outcome
            # the first copy failed and released the key: try to claim it ourselves

    def complete(self, key: Hashable, result: Result[Any]) -> None:
        entry = self._entries.get(key)
        self._entries[key] = (self._clock() + self.ttl_s, result)
        self._entries.move_to_end(key)
        if entry is not None and isinstance(entry[1], asyncio.Future) and not entry[1].done():
            entry[1].set_result(result)

    def abort(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None and isinstance(entry[1], asyncio.Future) and not entry[1].done():
            entry[1].set_result(None)

    def _evict(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, (expires_at, state) = next(iter(entries.items()))
            if isinstance(state, Result) and expires_at < now:
                del entries[key]
            elif len(entries) >= self.max_entries:
                del entries[key]
                self.evictions += 1
                if isinstance(state, asyncio.Future) and not state.done():
                    state.set_result(None)
            else:
                break


class ShardedIdempotencyStore:
    """``shards`` independent :class:`InMemoryIdempotencyStore` shards, a key's shard chosen by
    a stable hash (Catga's sharded in-memory store). Bounds and TTL apply per shard
    (``max_entries`` is split evenly), so eviction scans stay short and one hot key range
    cannot evict the others' entries.

    Args:
        shards: number of shards (>= 1).
        max_entries: keys kept at most in total.
        ttl_s: seconds a completed key is remembered.
        clock: monotonic clock in seconds.
    """

    def __init__(self, shards: int = 16, max_entries: int = 1_000_000, ttl_s: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if shards < 1:
            raise ValueError(f"shards must be >= 1, got {shards}")
        if max_entries < shards:
            raise ValueError(f"max_entries must be >= shards ({shards}), got {max_entries}")
        self.shards = [InMemoryIdempotencyStore(max_entries // shards, ttl_s, clock)
                       for _ in range(shards)]

    def _shard(self, key: Hashable) -> InMemoryIdempotencyStore:
        digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
        return self.shards[int.from_bytes(digest, "big") % len(self.shards)]

    def __len__(self) -> int:
        return sum(len(s) for s in self.shards)

    @property
    def hits(self) -> int:
        return sum(s.hits for s in self.shards)

    @property
    def misses(self) -> int:
        return sum(s.misses for s in self.shards)

    @property
    def evictions(self) -> int:
        return sum(s.evictions for s in self.shards)

    async def begin(self, key: Hashable) -> Result[Any] | None:
        return await self._shard(key).begin(key)

    def complete(self, key: Hashable, result: Result[Any]) -> None:
        self._shard(key).complete(key, result)

    def abort(self, key: Hashable) -> None:
        self._shard(key).abort(key)
