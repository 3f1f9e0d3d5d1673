"""Per-second timeline of a run: counts, gauges and a coarse latency histogram per second.

Rows are keyed by Unix second so timelines from several load-generator processes merge by
adding counts (and taking maxima of gauges). The latency histogram per second uses fixed
log-spaced buckets (10 % wide): good for plots of P50/P99 over time; the gate itself uses the
exact HDR histograms.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

#: bucket upper bounds in ms: 0.01 ms .. ~100 s, each 10 % above the previous
BOUNDS_MS: tuple[float, ...] = tuple(0.01 * 1.1 ** k for k in range(170))
COUNTERS = ("sent", "completed", "rejected", "timeouts", "errors", "ok")
GAUGES = ("breaker_open", "queue_depth", "in_flight", "loop_lag_ms")


class Timeline:
    """Accumulates per-second rows; ``to_dict`` / ``merge`` are JSON-friendly for shipping."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}

    def row(self, second: int) -> dict[str, Any]:
        r = self.rows.get(second)
        if r is None:
            r = {k: 0 for k in COUNTERS}
            r.update({k: 0.0 for k in GAUGES})
            r["lat"] = {}
            self.rows[second] = r
        return r

    def add_latency(self, second: int, latency_ms: float) -> None:
        lat = self.row(second)["lat"]
        i = bisect_left(BOUNDS_MS, latency_ms)
        lat[i] = lat.get(i, 0) + 1

    def gauge(self, second: int, name: str, value: float) -> None:
        r = self.row(second)
        if value > r[name]:
            r[name] = value

    def to_dict(self) -> dict[str, Any]:
        return {str(s): {**r, "lat": {str(k): v for k, v in r["lat"].items()}}
                for s, r in self.rows.items()}

    @classmethod
    def merge(cls, parts: Iterable[dict[str, Any]]) -> Timeline:
        """Combine shipped timelines: counters and latency buckets add, gauges take the max
        (queue depth, in-flight and open breakers add across processes)."""
        out = cls()
        for part in parts:
            for s, r in part.items():
                row = out.row(int(s))
                for k in COUNTERS:
                    row[k] += r.get(k, 0)
                for k in ("breaker_open", "queue_depth", "in_flight"):
                    row[k] += r.get(k, 0)
                row["loop_lag_ms"] = max(row["loop_lag_ms"], r.get("loop_lag_ms", 0.0))
                for b, n in r.get("lat", {}).items():
                    row["lat"][int(b)] = row["lat"].get(int(b), 0) + n
        return out

    def series(self, start_s: float | None = None) -> dict[str, list[Any]]:
        """Report form: lists aligned on ``t_s`` (seconds since ``start_s`` or the first row)."""
        if not self.rows:
            return {"t_s": []}
        secs = sorted(self.rows)
        origin = start_s if start_s is not None else secs[0]
        first, last = secs[0], secs[-1]
        out: dict[str, list[Any]] = {"t_s": []}
        for k in (*COUNTERS, "p50_ms", "p99_ms", "max_ms", *GAUGES):
            out[k] = []
        for s in range(first, last + 1):
            r = self.rows.get(s) or self.row(s)
            out["t_s"].append(round(s - origin, 3))
            for k in COUNTERS:
                out[k].append(r[k])
            for k in GAUGES:
                out[k].append(r[k])
            p50, p99, mx = _percentiles(r["lat"], (50.0, 99.0, 100.0))
            out["p50_ms"].append(p50)
            out["p99_ms"].append(p99)
            out["max_ms"].append(mx)
        return out


def _percentiles(buckets: dict[int, int], pcts: tuple[float, ...]) -> list[float | None]:
    total = sum(buckets.values())
    if not total:
        return [None] * len(pcts)
    out: list[float | None] = []
    items = sorted(buckets.items())
    for p in pcts:
        target = max(1, math.ceil(total * p / 100.0))
        running = 0
        for i, n in items:
            running += n
            if running >= target:
                out.append(round(BOUNDS_MS[min(i, len(BOUNDS_MS) - 1)], 3))
                break
    return out
