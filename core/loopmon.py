"""Event-loop lag monitor: the asyncio counterpart of thread-pool starvation.

A task sleeps ``interval_s`` and measures how late it wakes up. Lag is the time the loop was busy
with something else (a handler that blocks the loop, too much work per tick). Same technique as
Node's ``perf_hooks.monitorEventLoopDelay`` and aiomonitor / loopmon.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from core.histogram import BucketHistogram


class LoopLagMonitor:
    """Samples event-loop lag into a histogram and optional listeners.

    Args:
        interval_s: sampling interval in seconds.
        histogram: where samples go (milliseconds); created if not given.

    Use as an async context manager on the loop to watch, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, interval_s: float = 0.05, histogram: BucketHistogram | None = None) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self.histogram = histogram or BucketHistogram()
        self.listeners: list[Callable[[float], None]] = []
        self.max_lag_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling on the running loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        """Stop sampling and wait for the sampler to end."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def __aenter__(self) -> LoopLagMonitor:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        interval = self.interval_s
        perf = time.perf_counter
        while True:
            expected = perf() + interval
            await asyncio.sleep(interval)
            lag_ms = max(0.0, (perf() - expected) * 1000.0)
            if lag_ms > self.max_lag_ms:
                self.max_lag_ms = lag_ms
            self.histogram.observe(lag_ms)
            for listener in self.listeners:
                listener(lag_ms)
