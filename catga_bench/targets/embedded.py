"""The reference core embedded in the generator's process, on the same asyncio loop.

The default system under test: no services needed. A message is ``publish``-ed (events) or
``send``-t (requests) on the core's :class:`~core.Mediator`; its outcome is the call's
:class:`~core.Result`. The call is stepped eagerly: a message whose handlers finish without
suspending completes inside :meth:`EmbeddedTarget.offer`, without a task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any

from catga_bench.targets.base import OutcomeSink, SystemFigures, Target, wait_for_outcomes
from catga_bench.targets.core_under_test import CoreUnderTest
from catga_bench.workload.plan import RunPlan
from core import ErrorCode, Result
from core._eager import resume

log = logging.getLogger("catga.bench")


class EmbeddedTarget(Target):
    """The reference core in this process (see the module docstring).

    Args:
        defects: seeded core defects (gate tests only; :mod:`catga_bench.targets.defects`).

    After :meth:`open`, ``core`` is the :class:`CoreUnderTest` (its mediator and loop-lag
    monitor feed ``/metrics``).
    """

    name = "embedded"

    def __init__(self, *, defects: frozenset[str] = frozenset()) -> None:
        self.defects = defects
        self.core: CoreUnderTest | None = None
        self._sink: OutcomeSink | None = None
        self._calls: list[tuple[Any, bool]] = []  # per stream: (make, is_event)
        self._mediator: Any = None
        self._completed: Any = None  # the sink's ``completed``

    async def open(self, plan: RunPlan, sink: OutcomeSink) -> None:
        self._sink = sink
        self.core = CoreUnderTest(plan, sink, defects=self.defects)
        self._calls = [(st.make, st.is_event) for st in self.core.streams]
        self._mediator = self.core.mediator
        self._completed = sink.completed
        self.core.start()

    def offer(self, stream: int, seq: int, copies: int = 1) -> None:
        make, is_event = self._calls[stream]
        msg = make(seq=seq)
        self._dispatch(stream, msg, seq, is_event, True)
        for _ in range(copies - 1):  # the same message id again (a redelivery)
            self._dispatch(stream, msg, seq, is_event, False)

    def _dispatch(self, stream: int, msg: Any, seq: int, is_event: bool, record: bool) -> None:
        mediator = self._mediator
        coro = mediator.publish(msg) if is_event else mediator.send(msg)
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            if record:
                self._completed(stream, seq, stop.value)
            return
        task = asyncio.get_running_loop().create_task(_finish(coro, yielded))
        task.add_done_callback(partial(self._task_done, stream, seq, record))

    def _task_done(self, stream: int, seq: int, record: bool,
                   task: asyncio.Task[Result[Any]]) -> None:
        if not record or self._sink is None:
            return
        if task.cancelled():
            result: Result[Any] = Result.failure(ErrorCode.HANDLER_FAILED, "cancelled")
        elif task.exception() is not None:
            exc = task.exception()
            log.error("publish/send raised (a core bug): %r", exc)
            result = Result.failure(ErrorCode.HANDLER_FAILED, repr(exc))
        else:
            result = task.result()
        self._sink.completed(stream, seq, result)

    async def close(self, drain_timeout_s: float) -> SystemFigures:
        """Wait for in-flight messages and the mediator's background work (bounded)."""
        assert self.core is not None and self._sink is not None
        deadline = time.perf_counter() + drain_timeout_s
        await wait_for_outcomes(self._sink, deadline)
        drained = await self.core.drain(deadline - time.perf_counter())
        await self.core.stop()
        return self.core.figures(undrained=0 if drained else 1)


async def _finish(coro: Any, yielded: Any) -> Any:
    return await resume(coro, yielded)


__all__ = ["EmbeddedTarget"]
