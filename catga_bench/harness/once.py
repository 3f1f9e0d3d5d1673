"""Run the end of a run once, whoever asks first: Locust's ``-t`` timer and an early stop
(:mod:`catga_bench.harness.breach_watch`) may both quit the runner, each in its own greenlet; the
second caller must wait until the first has judged the run, not go on to stop the event loop
under the first one's drain."""

from __future__ import annotations

from collections.abc import Callable

from gevent.event import Event


class Once:
    """Calls ``fn`` on the first :meth:`__call__`; later calls wait (up to ``wait_s``) for it
    to finish. ``started`` is True from the first call on."""

    def __init__(self, fn: Callable[[], None], wait_s: float = 180.0) -> None:
        self._fn = fn
        self._wait_s = wait_s
        self._done = Event()
        self.started = False

    def __call__(self) -> None:
        if self.started:
            self._done.wait(timeout=self._wait_s)
            return
        self.started = True
        try:
            self._fn()
        finally:
            self._done.set()
