"""How ``catga-bench bench`` measures: the event loop, the timed loops and their results.

A benchmark body is a :data:`LoopFn` (``await loop(n)`` runs ``n`` iterations); :func:`compare`
times several bodies interleaved after a warm-up, each timed run between two
``time.perf_counter_ns`` reads with the garbage collector disabled (:func:`time_loop`). A
:class:`Figure` is the median cost of a subject against the median cost of a floor measured in
the same run; a :class:`Section` is the figures of one benchmark.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

LoopFn = Callable[[int], Awaitable[None]]
"""A benchmark body: ``await loop(n)`` runs ``n`` iterations of the thing measured."""


# --------------------------------------------------------------------------- results
@dataclass(slots=True)
class Figure:
    """One measured subject against a floor measured in the same run.

    Attributes:
        name: stable key (JSON, ``--only``-independent).
        label: what was measured, for humans.
        ns: median cost of the subject per operation, in nanoseconds.
        floor_label: what the floor is.
        floor_ns: median cost of the floor per operation, in nanoseconds.
        limit: acceptance limit on :attr:`ratio` (None: informational).
        samples_ns: the subject's per-repeat costs (ns/op).
        floor_samples_ns: the floor's per-repeat costs (ns/op).
    """

    name: str
    label: str
    ns: float
    floor_label: str
    floor_ns: float
    limit: float | None = None
    samples_ns: list[float] = field(default_factory=list)
    floor_samples_ns: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Subject cost divided by floor cost (the figure that is judged)."""
        return self.ns / self.floor_ns if self.floor_ns > 0 else float("inf")

    @property
    def passed(self) -> bool | None:
        """``ratio <= limit``, or None when the figure has no limit."""
        return None if self.limit is None else self.ratio <= self.limit

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (costs in ns)."""
        return {
            "label": self.label,
            "ns": round(self.ns, 2),
            "floor_label": self.floor_label,
            "floor_ns": round(self.floor_ns, 2),
            "ratio": round(self.ratio, 3),
            "limit": self.limit,
            "passed": self.passed,
            "samples_ns": [round(s, 2) for s in self.samples_ns],
            "floor_samples_ns": [round(s, 2) for s in self.floor_samples_ns],
        }


@dataclass(slots=True)
class Section:
    """The result of one benchmark: its figures plus informational extras."""

    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None

    def figure(self, name: str) -> Figure:
        """The figure called ``name``.

        Raises:
            KeyError: no such figure.
        """
        for f in self.figures:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "title": self.title,
            "figures": {f.name: f.to_dict() for f in self.figures},
            "info": self.info,
            "notes": self.notes,
            "skipped": self.skipped,
        }

# --------------------------------------------------------------------------- the loop
def loop_kind() -> str:
    """Which event loop the suite runs on: ``"uvloop X.Y.Z"`` or ``"asyncio"``."""
    try:
        import uvloop
    except ImportError:
        return "asyncio (uvloop not installed)"
    return f"uvloop {uvloop.__version__}"


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_on_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh event loop (uvloop if importable)."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(coro)


# --------------------------------------------------------------------------- timing
async def time_loop(fn: LoopFn, iterations: int) -> float:
    """Run ``fn(iterations)`` once with the GC disabled; return nanoseconds per iteration."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        await fn(iterations)
        elapsed = time.perf_counter_ns() - t0
    finally:
        gc.enable()
    return elapsed / iterations


async def compare(
    loops: dict[str, LoopFn],
    iterations: int | dict[str, int],
    repeats: int,
) -> dict[str, list[float]]:
    """Time every loop ``repeats`` times, interleaved, after one warm-up run each.

    Args:
        loops: name -> loop body; they run in this order within each repeat.
        iterations: iterations per timed run (one count, or one per loop name).
        repeats: timed runs per loop (>= 1).

    Returns:
        name -> per-repeat nanoseconds per iteration.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")

    def n_of(name: str) -> int:
        n = iterations[name] if isinstance(iterations, dict) else iterations
        return max(1, int(n))

    for name, fn in loops.items():  # warm-up: caches, specialisation, lazily built state
        await fn(max(1, n_of(name) // 5))
    out: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(repeats):
        for name, fn in loops.items():
            out[name].append(await time_loop(fn, n_of(name)))
    return out


def median(xs: Sequence[float]) -> float:
    """The median of ``xs`` as a float."""
    return float(statistics.median(xs))


def make_figure(
    name: str,
    label: str,
    samples: list[float],
    floor_label: str,
    floor_samples: list[float],
    limit: float | None = None,
) -> Figure:
    """A :class:`Figure` of the medians of ``samples`` and ``floor_samples`` (kept too)."""
    return Figure(name, label, median(samples), floor_label, median(floor_samples), limit,
                  list(samples), list(floor_samples))


def sync_loop(body: Callable[[int], None]) -> LoopFn:
    """Wrap a synchronous loop body as a :data:`LoopFn`."""

    async def run(n: int) -> None:
        body(n)

    return run
