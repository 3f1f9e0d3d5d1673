"""The metrics a comparison knows: how each is read from a run report and which way is worse.

A *relative* metric is compared as a ratio of medians against a margin (noise allowed); an
*absolute* one has a hard limit (nothing allowed over it, whatever the noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Metric:
    """``kind``: relative (ratio + margin) or absolute (limit); ``worse``: which way is worse."""

    name: str
    kind: Literal["relative", "absolute"]
    worse: Literal["higher", "lower"]
    unit: str
    label: str


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("p99_ms", "relative", "higher", "ms", "P99 latency"),
    Metric("p50_ms", "relative", "higher", "ms", "P50 latency"),
    Metric("p999_ms", "relative", "higher", "ms", "P99.9 latency"),
    Metric("achieved_rate", "relative", "lower", "msg/s", "achieved rate"),
    Metric("error_ratio", "absolute", "higher", "", "error ratio"),
    Metric("lost", "absolute", "higher", "msgs", "lost messages"),
    Metric("duplicates", "absolute", "higher", "msgs", "duplicates"),
)}

DEFAULT_METRICS: tuple[str, ...] = ("p99_ms", "achieved_rate", "error_ratio", "lost",
                                    "duplicates")
ABSOLUTE: tuple[str, ...] = tuple(n for n, m in METRICS.items() if m.kind == "absolute")
