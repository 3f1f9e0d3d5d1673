"""Feed Locust's own statistics (web UI, ``--csv``, ``--html``) with many completions at once.

Firing one Locust ``request`` event per completed message costs a few microseconds of Python
on the gevent thread, and that thread shares the GIL with the asyncio loop that generates the
load (and, embedded, runs the core). At tens of thousands of messages a second the events took
a large share of the one core the process can use: measured on a 2-vCPU VM with the no-op
scenario at 30,000 msg/s, the loop's lag P99 was 20-70 ms with per-message events and ~2 ms
without them (catga-bench's capacity search then read the generator's own overhead, and its
noise, as the system's). So successful completions are added per name in one step,
through :meth:`locust.stats.StatsEntry.extend` — the path Locust's master uses to merge a
worker's statistics — with Locust's own response-time buckets
(:func:`locust.stats.bucket_response_time`). Failures still fire one ``request`` event each
(they are few, and Locust's error table wants each one's exception).

Listeners that a locustfile adds to ``events.request`` therefore see failures only; the
catga-bench report (HDR histograms, the ledger) never depended on these statistics.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

from locust.stats import RequestStats, StatsEntry, bucket_response_time


def log_successes(stats: RequestStats, method: str, name: str,
                  latencies_ms: Sequence[float]) -> None:
    """Add ``len(latencies_ms)`` successful requests of ``(name, method)`` to ``stats`` (and
    its total), as that many ``request`` events without an exception would (latencies in ms;
    all counted in the current second)."""
    if not latencies_ms:
        return
    now = time.time()
    batch = StatsEntry(stats, name, method)
    batch.start_time = now
    batch.last_request_timestamp = now
    batch.num_requests = len(latencies_ms)
    batch.num_reqs_per_sec[int(now)] = len(latencies_ms)
    batch.total_response_time = sum(latencies_ms)  # type: ignore[assignment]
    batch.min_response_time = min(latencies_ms)  # type: ignore[assignment]
    batch.max_response_time = max(latencies_ms)  # type: ignore[assignment]
    batch.response_times = Counter(bucket_response_time(x) for x in latencies_ms)
    stats.get(name, method).extend(batch)
    stats.total.extend(batch)
