"""Concurrency limiter (bulkhead) with a bounded wait queue.

At most ``max_concurrency`` holders run at once; up to ``max_queue`` callers wait in FIFO order;
when the queue is full a caller is rejected at once (backpressure) and counted. Nothing grows
without bound: memory is O(max_queue). Source: the bulkhead pattern (Nygard, *Release It!*) and
Polly's ``BulkheadPolicy`` (maxParallelization, maxQueuingActions).

Hot path: :meth:`try_acquire` is a plain method (no coroutine) so an uncontended admission costs
a comparison and an increment. Only a caller that must queue pays for a coroutine and a future.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class ConcurrencyLimiter:
    """A bulkhead for one asyncio loop (not thread-safe).

    Args:
        max_concurrency: holders admitted at once (>= 1).
        max_queue: callers allowed to wait (>= 0); 0 means reject whenever all slots are taken.
        queue_timeout_s: a waiter not admitted within this many seconds is rejected (None: wait).
        name: label for metrics.

    Raises:
        ValueError: on a limit out of range.
    """

    __slots__ = (
        "_waiters",
        "active",
        "admitted",
        "max_concurrency",
        "max_queue",
        "name",
        "peak_active",
        "peak_queue_depth",
        "queue_timeout_s",
        "rejected",
    )

    def __init__(
        self,
        max_concurrency: int,
        max_queue: int = 0,
        *,
        queue_timeout_s: float | None = None,
        name: str = "mediator",
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        if queue_timeout_s is not None and queue_timeout_s <= 0:
            raise ValueError(f"queue_timeout_s must be > 0 or None, got {queue_timeout_s}")
        self.name = name
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.active = 0
        self.admitted = 0
        self.rejected = 0
        self.peak_active = 0
        self.peak_queue_depth = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queue_depth(self) -> int:
        """Callers waiting for a slot now."""
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is queued; never waits, never counts a reject."""
        if self.active < self.max_concurrency and not self._waiters:
            self.active += 1
            self.admitted += 1
            if self.active > self.peak_active:
                self.peak_active = self.active
            return True
        return False

    async def acquire(self) -> bool:
        """Take a slot, waiting in the queue if needed.

        Returns:
            True when admitted (the caller must :meth:`release`), False when rejected because
            the queue was full or ``queue_timeout_s`` passed (counted in ``rejected``).
        """
        if self.try_acquire():
            return True
        if len(self._waiters) >= self.max_queue:
            self.rejected += 1
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        if len(self._waiters) > self.peak_queue_depth:
            self.peak_queue_depth = len(self._waiters)
        try:
            if self.queue_timeout_s is None:
                await fut
            else:
                # asyncio.wait, not wait_for: on 3.11 wait_for swallows a cancellation that
                # arrives just after the slot was handed over (it returns the result instead)
                await asyncio.wait((fut,), timeout=self.queue_timeout_s)
                if not fut.done():  # not admitted in time
                    fut.cancel()
                    self._remove(fut)
                    self.rejected += 1
                    return False
        except BaseException:
            if fut.done() and not fut.cancelled():  # slot was handed to us: give it back
                self.release()
            else:
                fut.cancel()
                self._remove(fut)
            raise
        return True

    def release(self) -> None:
        """Give a slot back; the oldest waiter (if any) takes it over."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes to the waiter: active is unchanged
                self.admitted += 1
                return
        self.active -= 1

    def _remove(self, fut: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(fut)
