"""The load generator's own ceiling: the same search against a system that does nothing, so a
capacity figure can say whether the system or the generator was the limit.

=========  =====================================================================  ===========
kind       the no-op system                                                       scenario
=========  =====================================================================  ===========
embedded   the embedded core with one handler that does nothing (QoS 0)           _noop.py
nats       a NATS echo, a black box (specs/nats_echo.py via its AsyncAPI doc)      _noop_nats.py
http       the Node example service's ``POST /orders`` (examples/order-service-node) _noop_http.py
=========  =====================================================================  ===========

The kind matching a run comes from its first trial's report (``transport`` and ``sut.kind``).
A measured ceiling is kept in a small cache (``$XDG_CACHE_HOME/catga-bench/``, one file per
kind, P99 limit, trial length and exceed ratio, and per ``METHOD``) for ``CACHE_MAX_AGE_S``:
later capacity runs within the hour reuse it.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from catga_bench.capacity.model import SearchResult
from catga_bench.judge.values import as_dict, as_number

KINDS = ("embedded", "nats", "http")
SCENARIO_FILES = {"embedded": "_noop.py", "nats": "_noop_nats.py", "http": "_noop_http.py"}
#: a cached ceiling is reused for this long (s)
CACHE_MAX_AGE_S = 3600.0
#: the system's bracket reaching this share of the ceiling: the generator was the limit
NEAR_CEILING = 0.9
#: how trials are judged; a ceiling cached under another method is measured again
METHOD = "v3-per-second-bulk-stats"


def scenario_file(kind: str) -> Path:
    """The no-op scenario of ``kind``: ``scenarios/`` next to the catga_bench package, else
    ``./scenarios``. Raises FileNotFoundError."""
    name = SCENARIO_FILES[kind]
    for d in (Path(__file__).resolve().parents[2] / "scenarios", Path("scenarios")):
        if (d / name).is_file():
            return (d / name).resolve()
    raise FileNotFoundError(f"the ceiling's scenario {name} was not found in scenarios/")


def matching_kind(report: dict[str, Any]) -> str | None:
    """The ceiling kind for a run judged by ``report``: embedded, nats, http, or None (Redis,
    or an unknown system)."""
    sut = as_dict(report.get("sut")).get("kind") or "core"
    transport = str(report.get("transport") or "embedded")
    if sut == "http" or transport == "http":
        return "http"
    if "redis" in transport:
        return None
    if sut == "core" and transport == "embedded":
        return "embedded"
    return "nats"


def _cache_path(kind: str, p99_ms: float | None, trial_s: float, exceed_ratio: float) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    limit = "none" if p99_ms is None else f"{p99_ms:g}"
    return base / "catga-bench" / (f"ceiling-{kind}-p99-{limit}-trial-{trial_s:g}s-exceed-"
                                   f"{exceed_ratio:g}-{METHOD}.json")


def load_cached(kind: str, p99_ms: float | None, trial_s: float,
                exceed_ratio: float = 0.5) -> dict[str, Any] | None:
    """A ceiling of this kind, P99 limit, trial length and exceed ratio measured within
    ``CACHE_MAX_AGE_S`` on this host, or None."""
    path = _cache_path(kind, p99_ms, trial_s, exceed_ratio)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    fresh = time.time() - (as_number(doc.get("measured_at_unix")) or 0) <= CACHE_MAX_AGE_S
    same_host = doc.get("host") == platform.node()
    return {**doc, "cached": str(path)} if fresh and same_host else None


def store(kind: str, p99_ms: float | None, trial_s: float, summary: dict[str, Any],
          exceed_ratio: float = 0.5) -> None:
    """Keep a measured ceiling for later runs (failures to write are ignored)."""
    path = _cache_path(kind, p99_ms, trial_s, exceed_ratio)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**summary, "host": platform.node(),
                                    "measured_at_unix": time.time()}, indent=2))
    except OSError:
        pass


def summary(kind: str, result: SearchResult, p99_ms: float | None) -> dict[str, Any]:
    """The ceiling as the capacity report shows it."""
    return {"kind": kind, "lo": result.lo, "hi": result.hi, "hi_kind": result.hi_kind,
            "outcome": result.outcome, "p99_limit_ms": p99_ms, "note": result.note,
            "trials": len(result.trials)}


def limited_by(result: SearchResult, ceiling: dict[str, Any] | None,
               transport: str) -> tuple[str, str]:
    """("system" | "generator" | "unknown", why) for a capacity result.

    The generator limited it when the bracket's upper end was an invalid trial (the generator
    could not offer it) or the bracket reaches ``NEAR_CEILING`` of the generator's ceiling.
    Embedded, the core shares the generator's event loop: an invalid trial well below the
    ceiling measured with a no-op handler means the system's handlers starved that loop, so
    the system is named.
    """
    ceiling_lo = as_number((ceiling or {}).get("lo"))
    top = result.hi if result.hi is not None else result.lo
    near = (ceiling_lo is not None and top is not None and top >= NEAR_CEILING * ceiling_lo)
    if near:
        why = (f"the bracket reaches {NEAR_CEILING:.0%} of the generator's ceiling "
               f"({ceiling_lo:,.0f} msg/s on a no-op system)")
        ceiling_hi = as_number((ceiling or {}).get("hi"))
        if result.lo is not None and ceiling_hi is not None and result.lo >= ceiling_hi:
            # a system cannot hold more than the generator offers: the host was slower
            # when the ceiling was measured (a cached one, or a slow patch)
            why += (f"; the bracket is above that ceiling's upper end ({ceiling_hi:,.0f} "
                    f"msg/s{_age_text(ceiling)}): the host ran faster during the search than "
                    "while the ceiling was measured")
        return "generator", why
    if result.hi_kind == "generator":
        if transport == "embedded" and ceiling_lo is not None:
            return "system", (f"the generator fell behind at {result.hi:,.0f} msg/s, well "
                              f"below its ceiling ({ceiling_lo:,.0f} msg/s with a no-op "
                              "handler): the system's handlers starved the event loop they "
                              "share with the generator")
        return "generator", (f"the generator could not offer {result.hi:,.0f} msg/s "
                             "(an invalid trial, not the system's failure)")
    if result.hi_kind == "system":
        if ceiling_lo is None:
            return "system", ("the SLO failed at the upper end while the generator offered "
                              "the load (no ceiling measured to compare with)")
        return "system", (f"the SLO failed at {result.hi:,.0f} msg/s, below the generator's "
                          f"ceiling ({ceiling_lo:,.0f} msg/s)")
    return "unknown", "no upper end was found"


def _age_min(ceiling: dict[str, Any] | None) -> float | None:
    """Minutes since a cached ceiling was measured, or None (measured now, or no time)."""
    at = as_number((ceiling or {}).get("measured_at_unix"))
    if at is None or not (ceiling or {}).get("cached"):
        return None
    return max(0.0, time.time() - at) / 60


def _age_text(ceiling: dict[str, Any] | None) -> str:
    """", measured N min ago" for a cached ceiling, else ""."""
    age = _age_min(ceiling)
    return "" if age is None else f", measured {age:.0f} min ago"


def cached_text(ceiling: dict[str, Any]) -> str:
    """" (cached N min ago: PATH)" for a ceiling from the cache, else ""."""
    if not ceiling.get("cached"):
        return ""
    age = _age_min(ceiling)
    return f" (cached{'' if age is None else f' {age:.0f} min ago'}: {ceiling['cached']})"
