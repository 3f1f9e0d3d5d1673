"""What a process costs while it runs: resident memory (start, peak) and CPU seconds.

Used by the load generator and by the served core alike; ``sample()`` is cheap enough for a
10 Hz sampler (one ``/proc`` read).
"""

from __future__ import annotations

import os
import time

import psutil


class ResourceProbe:
    """RSS in MB (2**20 bytes) at start and at its peak; CPU seconds since :meth:`start`.

    ``loop_thread`` is the CPU time of the thread that called :meth:`start` (the asyncio loop's
    thread); ``other_threads`` is the rest of the process (Locust, the bridge, /metrics).
    """

    def __init__(self) -> None:
        self._proc = psutil.Process(os.getpid())
        self.rss_start_mb = self.rss_mb()
        self.rss_peak_mb = self.rss_start_mb
        self._cpu0_thread = 0.0
        self._cpu0_process = 0.0

    def rss_mb(self) -> float:
        """Resident memory now (MB)."""
        return float(self._proc.memory_info().rss) / 2**20

    def start(self) -> None:
        """Zero the CPU counters (call on the thread whose CPU time is ``loop_thread``)."""
        self._cpu0_thread = time.thread_time()
        t = self._proc.cpu_times()
        self._cpu0_process = t.user + t.system

    def sample(self) -> None:
        """Update the RSS peak."""
        rss = self.rss_mb()
        if rss > self.rss_peak_mb:
            self.rss_peak_mb = rss

    def rss(self) -> dict[str, float]:
        """``{"start": MB, "peak": MB}``, rounded to 0.1 MB."""
        return {"start": round(self.rss_start_mb, 1), "peak": round(self.rss_peak_mb, 1)}

    def cpu(self) -> dict[str, float]:
        """CPU seconds since :meth:`start`: ``loop_thread``, ``process``, ``other_threads``."""
        t = self._proc.cpu_times()
        process = t.user + t.system - self._cpu0_process
        loop = time.thread_time() - self._cpu0_thread
        return {"loop_thread": round(loop, 3), "process": round(process, 3),
                "other_threads": round(max(0.0, process - loop), 3)}


__all__ = ["ResourceProbe"]
