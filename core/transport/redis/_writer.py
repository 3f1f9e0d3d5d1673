"""The auto-pipeline: every write of a RedisTransport goes through one :class:`Writer`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from core.transport.base import (
    BrokerUnavailable,
    TransportError,
)
from core.transport.redis._errors import BACKOFF_MAX_S, BACKOFF_MIN_S, CONN_ERRORS
from core.transport.redis._framing import LOAD_SCRIPT, LOAD_SCRIPT_PACKED, hiredis_pack

if TYPE_CHECKING:
    from core.transport.redis._transport import RedisTransport

_log = logging.getLogger("catga.transport.redis")

_MAX_BATCH = 1024


class Op:
    """A queued command. Without ``fut`` it is fire-and-forget; ``counts`` marks a QoS 0 frame
    (counted in ``published`` / ``publish_errors``)."""

    __slots__ = ("alt", "args", "counts", "deadline", "fut", "packed", "retry")

    def __init__(self, args: tuple[Any, ...], fut: asyncio.Future[Any] | None, deadline: float,
                 retry: bool, alt: tuple[Any, ...] | None = None, counts: bool = False) -> None:
        self.args = args
        # packed by the caller, so an argument of a bad type fails there, not the whole batch
        self.packed = hiredis_pack(args) if hiredis_pack is not None else None
        self.fut = fut
        self.deadline = deadline
        self.retry = retry
        self.alt = alt
        self.counts = counts


class Writer:
    """Auto-pipelining: one pipeline in flight; commands queued meanwhile form the next one."""

    def __init__(self, transport: RedisTransport, client: aioredis.Redis) -> None:
        self._t = transport
        self._client = client
        self.queue: deque[Op] = deque()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="catga-redis-writer")

    def submit(self, op: Op) -> None:
        self.queue.append(op)
        self._wake.set()

    async def call(self, *args: Any, limit_s: float | None = None) -> Any:
        """Run one command through the pipeline (retried on connection loss until the
        deadline); raises BrokerUnavailable or TransportError."""
        self._t._check_budget()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.submit(Op(args, fut, self._t._deadline(limit_s), True))
        return await fut

    async def _run(self) -> None:
        """Send batch after batch until cancelled; back off while the broker is gone."""
        backoff = BACKOFF_MIN_S
        queue = self.queue
        while True:
            if not queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._take_batch()
            if not batch:
                continue
            try:
                results = await self._execute(batch)
            except asyncio.CancelledError:
                queue.extendleft(reversed(batch))
                raise
            except CONN_ERRORS as exc:
                self._t._note_down(exc, "writing")
                self._requeue_or_fail(batch, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            except Exception as exc:  # a bug or an unexpected client error: fail the batch
                _log.exception("pipeline of %d commands failed", len(batch))
                for op in batch:
                    self._fail(op, TransportError(f"redis pipeline failed: {exc!r}"))
                continue
            self._t._note_up()
            backoff = BACKOFF_MIN_S
            self._settle(batch, results)

    def _take_batch(self) -> list[Op]:
        """Up to ``_MAX_BATCH`` queued ops, oldest first, skipping those whose caller gave up
        (empty when every queued op was abandoned)."""
        queue = self.queue
        batch: list[Op] = []
        while queue and len(batch) < _MAX_BATCH:
            op = queue.popleft()
            if op.fut is None or not op.fut.done():
                batch.append(op)
        return batch

    def _settle(self, batch: list[Op], results: list[Any]) -> None:
        """Hand each reply to its caller (or count a QoS 0 frame as published); an EVALSHA
        refused with NOSCRIPT is queued again, first, as the EVAL it stands for."""
        again: list[Op] = []
        for op, res in zip(batch, results, strict=True):
            if isinstance(res, NoScriptError) and op.alt is not None:
                op.args, op.alt = op.alt, None  # script cache empty (restart): EVAL once
                if op.packed is not None:
                    op.packed = hiredis_pack(op.args)
                again.append(op)
            elif isinstance(res, Exception):
                self._fail(op, TransportError(f"redis refused {op.args[0]}: {res}"))
            elif op.fut is None:
                if op.counts:
                    self._t.stats.published += 1  # a queued QoS 0 frame went out
            elif not op.fut.done():
                op.fut.set_result(res)
        if again:
            self.queue.extendleft(reversed(again))

    async def _execute(self, batch: list[Op]) -> list[Any]:
        """Send ``batch`` in one write on one pooled connection and read every reply (raw
        RESP values; a refused command's reply is its ResponseError). This is a leaner
        ``pipeline(transaction=False)``: hiredis packs, one timeout covers the whole batch."""
        pool = self._client.connection_pool
        conn = await pool.get_connection()
        # The script cache is empty after a broker restart (which the pool hides by
        # reconnecting): load it ahead of any batch that uses it, so EVALSHA never fails and
        # replies stay in order (a NOSCRIPT retry would overtake a flush's PING).
        load = any(op.alt is not None for op in batch)
        try:
            async with asyncio.timeout(self._t._io_timeout_s):
                if hiredis_pack is not None:
                    packed = b"".join([op.packed for op in batch])  # type: ignore[misc]
                    if load:
                        packed = LOAD_SCRIPT_PACKED + packed
                else:
                    packed = conn.pack_commands(
                        [*((LOAD_SCRIPT,) if load else ()), *(op.args for op in batch)])
                await conn.send_packed_command(packed, check_health=False)
                if load:
                    with contextlib.suppress(ResponseError):
                        await conn.read_response(timeout=math.inf)
                results: list[Any] = []
                for _ in batch:
                    try:
                        results.append(await conn.read_response(timeout=math.inf))
                    except ResponseError as exc:
                        results.append(exc)
            return results
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)  # replies may be left unread: drop it
            raise
        finally:
            await pool.release(conn)

    def _requeue_or_fail(self, batch: list[Op], exc: BaseException) -> None:
        now = time.monotonic()
        keep: list[Op] = []
        for op in batch:
            if not op.retry:
                self._fail(op, BrokerUnavailable(self._t.url, str(exc) or type(exc).__name__))
            elif now >= op.deadline:
                self._fail(op, BrokerUnavailable(
                    self._t.url, f"{exc or type(exc).__name__} (gave up after the reconnect "
                                 f"budget of {self._t.reconnect_budget_s:g} s)"))
            else:
                keep.append(op)
        self.queue.extendleft(reversed(keep))

    def _fail(self, op: Op, exc: BaseException) -> None:
        if op.fut is None:
            if op.counts:
                self._t.stats.publish_errors += 1
            _log.debug("dropped %s: %s", op.args[0], exc)
        elif not op.fut.done():
            op.fut.set_exception(exc)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        while self.queue:
            self._fail(self.queue.popleft(), TransportError("transport closed"))
