"""How fast this host runs plain Python while a capacity search runs: a speed index sampled in
the background, so a report can say when the *host* moved rather than the system.

A capacity bracket is only as steady as the machine under it. On a shared VM the speed a
process gets from its core drifts: measured on a 2-vCPU Firecracker VM, a fixed pure-Python
loop ran 9.7 M to 17.5 M iterations per 0.5 s within ten minutes, and the embedded core's
capacity followed it (about 43 K to 60 K msg/s). Two brackets measured minutes apart then need
not overlap although nothing in the system changed. The probe makes that visible: every
``interval_s`` it counts how many iterations of a fixed loop one thread completes per second
of its own CPU time over ``sample_s`` (the capacity command's own process is idle while its
trials run in their own processes; CPU time, so that the trials' own use of the cores does not
read as a slower host), and the report gives the spread (max / min - 1) beside the bracket.

Cost: ``sample_s / interval_s`` of one core (0.2 s every 5 s: 4 %), which competes with the
trials only where they use every core.
"""

from __future__ import annotations

import statistics
import threading
import time
from types import TracebackType
from typing import Any

#: a spread over this is called out: brackets measured at other times need not overlap
NOTABLE_SPREAD = 0.10


def speed_index(sample_s: float) -> float:
    """Iterations of a fixed pure-Python loop per second of this thread's CPU time, over
    ``sample_s`` seconds of wall time. Per CPU second, not per wall second: while the trials
    keep every core busy the thread runs less often, and that is not the host slowing down."""
    perf, cpu = time.perf_counter, time.thread_time
    cpu_start = cpu()
    end = perf() + sample_s
    n = 0
    while perf() < end:
        for _ in range(1000):
            pass
        n += 1000
    used = cpu() - cpu_start
    return n / used if used > 0 else 0.0


class HostSpeedProbe:
    """Samples :func:`speed_index` every ``interval_s`` in a daemon thread while entered.

    Use as a context manager; :meth:`summary` gives the samples and their spread.
    """

    def __init__(self, interval_s: float = 5.0, sample_s: float = 0.2) -> None:
        if interval_s <= sample_s or sample_s <= 0:
            raise ValueError("need 0 < sample_s < interval_s")
        self.interval_s = interval_s
        self.sample_s = sample_s
        self.samples: list[tuple[float, float]] = []  # (seconds since start, index)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def __enter__(self) -> HostSpeedProbe:
        self._t0 = time.monotonic()
        self.samples.append((0.0, speed_index(self.sample_s)))  # one before anything runs
        self._thread = threading.Thread(target=self._run, name="host-speed", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 1)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s - self.sample_s):
            at = time.monotonic() - self._t0
            self.samples.append((round(at, 1), speed_index(self.sample_s)))

    def summary(self) -> dict[str, Any]:
        """``{"samples": [[t_s, index], ...], "min", "median", "max", "spread", "notable"}``:
        index in loop iterations per second; spread = max / min - 1 (None with < 2
        samples); notable when the spread is over ``NOTABLE_SPREAD``."""
        values = [v for _, v in self.samples]
        if not values:
            return {"samples": [], "min": None, "median": None, "max": None, "spread": None,
                    "notable": False}
        spread = max(values) / min(values) - 1 if len(values) >= 2 and min(values) > 0 else None
        return {"samples": [[t, round(v)] for t, v in self.samples],
                "min": round(min(values)), "median": round(statistics.median(values)),
                "max": round(max(values)), "spread": None if spread is None else round(spread, 3),
                "notable": spread is not None and spread > NOTABLE_SPREAD,
                "interval_s": self.interval_s, "sample_s": self.sample_s}
