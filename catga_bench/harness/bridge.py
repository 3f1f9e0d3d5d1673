"""The one thread-safe bridge between Locust's greenlets and the asyncio loop of the core.

Locust runs on gevent (monkey-patched: ``threading``, ``socket``, ``select`` are gevent's). The
core runs on an asyncio loop in a *real* OS thread of the same process. Crossing rules, from
measurements on this machine kind (shared/FIELD-NOTES.md):

* The thread is started with the original ``_thread.start_new_thread`` (gevent's patched
  ``threading.Thread`` would be a greenlet), and the loop is uvloop (libuv, untouched by
  gevent's patching of ``select``/``socket``).
* Greenlet -> loop: ``loop.call_soon_threadsafe`` (fire and forget).
* Loop -> greenlet, bulk data: lock-free ``collections.deque`` appends, drained by greenlets on
  their own tick (no wake-ups per message).
* Loop -> greenlet, "done" signals: a ``gevent.event.AsyncResult`` set from the loop thread
  through ``hub.loop.run_callback_threadsafe``. Never ``concurrent.futures.Future.result()``
  from a greenlet: that deadlocked at random here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BridgeError(RuntimeError):
    """The loop thread is not running, or a call across the bridge failed or timed out."""


def _original(module: str, name: str) -> Any:
    try:
        from gevent import monkey

        return monkey.get_original(module, name)
    except ImportError:  # pragma: no cover - gevent always comes with locust
        mod = __import__(module)
        return getattr(mod, name)


class _DequeLogHandler(logging.Handler):
    """Queues records logged on the loop thread (no lock taken there); records from any other
    thread go straight to the root logger's handlers."""

    def __init__(self, sink: deque[logging.LogRecord], loop_thread_ident: int) -> None:
        super().__init__()
        self.sink = sink
        self.loop_thread_ident = loop_thread_ident
        self._get_ident = _original("_thread", "get_ident")

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        if self._get_ident() == self.loop_thread_ident:
            self.sink.append(record)  # deque.append is atomic: no lock needed
        else:
            root = logging.getLogger()
            if root.isEnabledFor(record.levelno):
                root.handle(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() overrides
        self.sink.append(record)


class LoopThread:
    """An asyncio (uvloop) event loop running in its own OS thread.

    Use :meth:`start` once per process (after any fork), :meth:`call_soon` to schedule a
    callback on it without waiting, :meth:`call` to run a coroutine and wait for its result
    from a greenlet, and
    :meth:`stop` at the end. Log records emitted on the loop thread are forwarded to the main
    thread's handlers by :meth:`pump_logs` (call it from a greenlet now and then).
    """

    def __init__(self, name: str = "catga-core") -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = _original("_thread", "allocate_lock")()
        self._ready.acquire()
        self._stopped = False
        self.thread_ident: int | None = None
        self.log_records: deque[logging.LogRecord] = deque(maxlen=10_000)

    @property
    def running(self) -> bool:
        return self.loop is not None and not self._stopped

    def start(self) -> None:
        """Start the thread and wait (briefly, blocking) until its loop runs."""
        if self.loop is not None:
            return
        _real_locks_for_logging()
        asyncio.get_event_loop_policy()  # create the policy here, not under a lock there
        start_new_thread = _original("_thread", "start_new_thread")
        start_new_thread(self._main, ())
        if not self._ready.acquire(timeout=10):
            raise BridgeError("the core's event-loop thread did not start within 10 s")

    def _main(self) -> None:
        try:
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - Windows: selector from the unpatched module
            selector = _original("selectors", "DefaultSelector")()
            loop = asyncio.SelectorEventLoop(selector)
        asyncio.set_event_loop(loop)
        self.loop = loop
        self.thread_ident = _original("_thread", "get_ident")()
        catga_log = logging.getLogger("catga")
        self._log_handler = _DequeLogHandler(self.log_records, self.thread_ident)
        catga_log.addHandler(self._log_handler)
        catga_log.propagate = False
        self._ready.release()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._stopped = True

    def pump_logs(self) -> None:
        """Forward log records from the loop thread to the normal handlers (main thread)."""
        records = self.log_records
        root = logging.getLogger()
        while records:
            record = records.popleft()
            if root.isEnabledFor(record.levelno):
                root.handle(record)  # the "catga" logger itself only feeds this deque

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None or self._stopped:
            raise BridgeError("the core's event-loop thread is not running")
        return self.loop

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule ``fn(*args)`` on the loop; returns at once."""
        self._require_loop().call_soon_threadsafe(fn, *args)

    def call_later(self, delay_s: float, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule ``fn(*args)`` on the loop ``delay_s`` seconds from now; returns at once."""
        loop = self._require_loop()
        loop.call_soon_threadsafe(loop.call_later, delay_s, fn, *args)

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        """Run ``coro`` on the loop and wait for its result from a greenlet (or plain thread).

        Raises:
            BridgeError: the loop is not running or the call took longer than ``timeout_s``.
            Exception: whatever ``coro`` raised.
        """
        import gevent
        from gevent.event import AsyncResult

        loop = self._require_loop()
        hub = gevent.get_hub()
        result: AsyncResult = AsyncResult()
        keepalive = hub.loop.async_()  # a referenced watcher: the hub must not see "no work"
        keepalive.start(lambda: None)

        def deliver(fut: asyncio.Future[T]) -> None:
            if fut.cancelled():
                outcome: tuple[bool, Any] = (False, BridgeError("call was cancelled"))
            elif fut.exception() is not None:
                outcome = (False, fut.exception())
            else:
                outcome = (True, fut.result())
            hub.loop.run_callback_threadsafe(_settle, result, outcome)

        def start() -> None:
            task = loop.create_task(coro)
            task.add_done_callback(deliver)

        loop.call_soon_threadsafe(start)
        try:
            ok, value = result.get(timeout=timeout_s)
        except gevent.Timeout as exc:
            raise BridgeError(f"no answer from the core's loop within {timeout_s:g} s") from exc
        finally:
            keepalive.stop()
            keepalive.close()
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the loop (pending tasks are cancelled) and wait for the thread to end."""
        if self.loop is None or self._stopped:
            return
        loop = self.loop

        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(BridgeError):
            self.call(_cancel_all(), timeout_s=timeout_s)
        loop.call_soon_threadsafe(loop.stop)
        deadline = time.monotonic() + timeout_s
        import gevent

        while not self._stopped and time.monotonic() < deadline:
            gevent.sleep(0.01)


def _real_locks_for_logging() -> None:
    """Give the ``logging`` module a real (OS-thread) lock.

    Under gevent's monkey-patching ``logging._lock`` is a gevent lock; the core's thread taking
    it (e.g. ``Logger.isEnabledFor`` on a cache miss) while a greenlet holds it deadlocked the
    whole process here. A real RLock is held for microseconds, so the main thread blocking on it
    costs nothing measurable.
    """
    real_rlock = _original("_thread", "RLock")  # the C RLock; threading.RLock is patched
    current = getattr(logging, "_lock", None)
    if current is not None and not isinstance(current, type(real_rlock())):
        logging._lock = real_rlock()  # type: ignore[attr-defined]


def _settle(result: Any, outcome: tuple[bool, Any]) -> None:
    result.set(outcome)
