"""Completion batches: what the served core's handlers did, published to the generators.

Records (handled / failed per handler, each message's outcome) are batched per generator and
published every ``interval_s`` on ``catga.benchdone.g<generator>``
(:mod:`catga_bench.targets.wire`); a message is acknowledged only after the batch holding its
records reached the broker, so the generator's ledger stays exact across crashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from typing import Any

from catga_bench.targets.wire import CompletionBatch, done_subject
from core import QoS
from core.transport import Transport
from core.transport.envelope import H_NATS_DEDUP

log = logging.getLogger("catga.serve")


class CompletionPublisher:
    """Batches completion records per generator and publishes them every ``interval_s``.

    :meth:`commit` returns once every record added before it was published and flushed to
    the broker; the endpoint awaits it before acknowledging a message.
    """

    def __init__(self, transport: Transport, interval_s: float = 0.002,
                 max_records: int = 4_000, qos: QoS = QoS.AT_MOST_ONCE) -> None:
        self.transport = transport
        self.qos = qos
        self._prefix = f"{os.getpid()}-{time.time_ns()}-"
        self._ids = itertools.count()
        self.interval_s = interval_s
        self.max_records = max_records
        self.batches: dict[int, CompletionBatch] = {}
        self.published_batches = 0
        self.errors = 0
        self._commit: asyncio.Future[None] | None = None
        self._retry: list[tuple[int, CompletionBatch]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="completions")

    def _batch(self, generator: int) -> CompletionBatch:
        b = self.batches.get(generator)
        if b is None:
            b = self.batches[generator] = CompletionBatch()
            self._wake.set()
        return b

    def handled(self, generator: int, stream: int, handler: int, seq: int) -> None:
        self._batch(generator).handled.append([stream, handler, seq])

    def failed(self, generator: int, stream: int, handler: int, seq: int) -> None:
        self._batch(generator).failed.append([stream, handler, seq])

    def result(self, generator: int, stream: int, seq: int, code: str,
               failures: list[list[Any]]) -> None:
        self._batch(generator).results.append([stream, seq, code, failures])

    async def commit(self) -> None:
        """Wait until everything recorded so far is on the broker (raises if publishing
        failed: the caller then leaves its message unacknowledged, to be redelivered)."""
        if self._commit is None:
            self._commit = asyncio.get_running_loop().create_future()
        self._wake.set()
        await asyncio.shield(self._commit)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.interval_s)
            batches, self.batches = self.batches, {}
            fut, self._commit = self._commit, None
            # batches that failed before go first, under their old ids: if the broker did
            # store one (its ack was lost), the generator applies it once all the same
            parts, self._retry = self._retry, []
            for gen, batch in batches.items():
                for part in _split(batch, self.max_records):
                    part.batch_id = f"{self._prefix}{next(self._ids)}"
                    parts.append((gen, part))
            sent = 0
            try:
                for gen, part in parts:
                    await self.transport.publish(done_subject(gen),
                                                 {H_NATS_DEDUP: part.batch_id},
                                                 part.encode(), qos=self.qos)
                    sent += 1
                    self.published_batches += 1
                await self.transport.flush()
            except Exception as exc:
                # keep every record (a handler's report must not vanish with a dropped link);
                # the messages waiting on this commit stay unacknowledged and come back
                self._retry = parts[sent:] + self._retry
                self.errors += 1
                log.warning("could not publish completions (%d batches kept for retry): %s",
                            len(self._retry), exc)
                if fut is not None and not fut.done():
                    fut.set_exception(exc)
                    fut.exception()  # retrieved: waiters see it, the loop does not log it
                self._wake.set()
                await asyncio.sleep(0.1)
                continue
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def close(self) -> None:
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.commit(), 2.0)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def _split(batch: CompletionBatch, n: int) -> list[CompletionBatch]:
    if len(batch) <= n:
        return [batch]
    out = []
    for i in range(0, max(len(batch.handled), len(batch.failed), len(batch.results)), n):
        out.append(CompletionBatch(batch.handled[i:i + n], batch.failed[i:i + n],
                                   batch.results[i:i + n]))
    return out


__all__ = ["CompletionPublisher"]
