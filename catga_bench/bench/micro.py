"""``catga-bench bench``: the project's benchmark suite, in one command.

Every figure is printed as a RATIO against a floor measured IN THE SAME RUN (the floor is
printed beside it): the machines this runs on are noisy, so absolute times say little, while
"the mediator costs 4x a bare ``await handler(msg)``" survives a slow or busy machine.

Method: each timed repeat runs a loop of many iterations between two ``time.perf_counter_ns``
reads, with the garbage collector disabled, after a warm-up; the floor and the subjects of one
benchmark run interleaved (floor, subject, floor, subject, ...) so that a noisy second hurts
both alike; a figure is the median of the repeats (5, or 3 with ``--quick``). Everything runs
inside one event loop (uvloop when importable; the loop kind is printed).

Benchmarks (names for ``--only``)::

    send       send, no behaviours           vs await handler(msg)      limit ratio <= 5
    send_full  send + limiter/breaker/timing vs await handler(msg)      limit ratio <= 25
    publish    publish to 1 / 100 handlers   vs a plain loop over them  limit (100) <= 3
    metrics    timing=True minus timing=False, prometheus_client per-call costs (informational)
    breaker    CircuitBreaker vs purgatory per call (informational)
    embedded   maximum sustainable rate of the generator + embedded core (informational)

Exit code: 0 when every limit holds, 1 otherwise (2 for a usage error, from argparse).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from rich.console import Console
from rich.table import Table

from catga_bench.generator.generator import Generator
from catga_bench.targets.embedded import EmbeddedTarget
from catga_bench.workload.plan import RunPlan
from catga_bench.workload.profiles import Fast, HandlerSpec
from catga_bench.workload.scenario import Scenario, Stream
from catga_bench.workload.slo import SLOTargets
from core import (
    BreakerConfig,
    BucketHistogram,
    CatgaCollector,
    CircuitBreaker,
    ConcurrencyLimiter,
    Event,
    HandlerOptions,
    Mediator,
    QoS,
    Request,
    Result,
)

T = TypeVar("T")

LoopFn = Callable[[int], Awaitable[None]]
"""A benchmark body: ``await loop(n)`` runs ``n`` iterations of the thing measured."""

BENCH_NAMES: tuple[str, ...] = ("send", "send_full", "publish", "metrics", "breaker", "embedded")

LIMIT_SEND = 5.0
LIMIT_SEND_FULL = 25.0
LIMIT_PUBLISH_100 = 3.0

#: offered rates (msg/s) stepped through by the embedded benchmark (it stops at the first
#: unsustained step); the top is well above what one CPython core sustains today
EMBEDDED_RATES: tuple[int, ...] = (
    5_000, 10_000, 20_000, 40_000, 70_000, 100_000, 130_000, 160_000, 200_000, 250_000,
)
#: the same for ``--quick`` (fewer low steps, to stay within its time budget)
EMBEDDED_RATES_QUICK: tuple[int, ...] = (
    10_000, 40_000, 70_000, 100_000, 130_000, 160_000, 200_000, 250_000,
)
#: a step is sustained when achieved >= this share of offered and P99 < EMBEDDED_P99_MS
EMBEDDED_MIN_ACHIEVED = 0.95
EMBEDDED_P99_MS = 100.0

COMPARISON_NOTE = (
    "fastest Python mediators measured elsewhere on this machine kind: send 8\u201314x, "
    "publish-to-100 4.6x; python-cqrs/lato default set-up 56\u2013290x"
)


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


@dataclass(slots=True)
class EmbeddedStep:
    """One offered rate of the embedded benchmark and what the core achieved at it."""

    offered: float
    duration_s: float
    sent: int
    completed: int
    failed: int
    achieved: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    loop_cpu: float | None = None

    @property
    def sustained(self) -> bool:
        """Achieved >= 95 % of offered and P99 < 100 ms."""
        return (
            self.achieved >= EMBEDDED_MIN_ACHIEVED * self.offered
            and self.p99_ms is not None
            and self.p99_ms < EMBEDDED_P99_MS
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "offered": self.offered,
            "duration_s": round(self.duration_s, 3),
            "sent": self.sent,
            "completed": self.completed,
            "failed": self.failed,
            "achieved": round(self.achieved, 1),
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "loop_cpu": self.loop_cpu,
            "sustained": self.sustained,
        }


@dataclass(slots=True)
class EmbeddedResult:
    """All steps run (stepping stops after the first unsustained one) and the maximum."""

    steps: list[EmbeddedStep]
    step_s: float

    @property
    def max_sustainable(self) -> float | None:
        """Highest offered rate sustained before the first unsustained step (None: none)."""
        best: float | None = None
        for s in self.steps:
            if not s.sustained:
                break
            best = s.offered
        return best

    @property
    def capped(self) -> bool:
        """True when every step was sustained (the real ceiling is above the last step)."""
        return bool(self.steps) and all(s.sustained for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "step_s": self.step_s,
            "steps": [s.to_dict() for s in self.steps],
            "max_sustainable_rate": self.max_sustainable,
            "every_step_sustained": self.capped,
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


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def _figure(
    name: str,
    label: str,
    samples: list[float],
    floor_label: str,
    floor_samples: list[float],
    limit: float | None = None,
) -> Figure:
    return Figure(name, label, _median(samples), floor_label, _median(floor_samples), limit,
                  list(samples), list(floor_samples))


def _sync(body: Callable[[int], None]) -> LoopFn:
    """Wrap a synchronous loop body as a :data:`LoopFn`."""

    async def run(n: int) -> None:
        body(n)

    return run


# --------------------------------------------------------------------------- subjects
@dataclass(slots=True)
class BenchRequest(Request):
    """The request sent by the send benchmarks."""

    n: int = 0


@dataclass(slots=True)
class BenchEvent(Event):
    """The event published by the publish benchmarks."""

    n: int = 0


async def ok_handler(msg: Any) -> Result[Any]:
    """The benchmarked request handler: completes at once with ``Result.OK``."""
    return Result.OK


def make_event_handler() -> Callable[[Any], Awaitable[None]]:
    """A fresh event handler that completes without suspending (returns None)."""

    async def on_event(evt: Any) -> None:
        return None

    return on_event


def _await_loop(fn: Callable[[Any], Awaitable[Any]], msg: Any) -> LoopFn:
    """``for _ in range(n): await fn(msg)``: the shape of every floor and subject loop."""

    async def run(n: int) -> None:
        f, m = fn, msg
        for _ in range(n):
            await f(m)

    return run


FLOOR_SEND = "await handler(msg)"


# --------------------------------------------------------------------------- benchmarks
async def bench_send(iterations: int, repeats: int) -> Section:
    """``Mediator(timing=False).send`` of a QoS 0 request vs ``await handler(msg)``."""
    m = Mediator(timing=False)
    m.register(BenchRequest, ok_handler)
    msg = BenchRequest(qos=QoS.AT_MOST_ONCE)
    r = await m.send(msg)
    assert r.error is None, r
    res = await compare({"floor": _await_loop(ok_handler, msg),
                         "send": _await_loop(m.send, msg)}, iterations, repeats)
    fig = _figure("send", "send, no behaviours (QoS 0, timing=False)", res["send"],
                  FLOOR_SEND, res["floor"], LIMIT_SEND)
    return Section("send", "send, no behaviours", [fig])


async def bench_send_full(iterations: int, repeats: int, scrapes: int = 200) -> Section:
    """send through the limiter, a breaker and timing, with a ``CatgaCollector`` registered;
    plus the cost of one scrape (``generate_latest``)."""
    m = Mediator(limiter=ConcurrencyLimiter(1000, 1000), timing=True)
    m.register(BenchRequest, ok_handler, options=HandlerOptions(breaker=BreakerConfig()))
    registry = CollectorRegistry()
    registry.register(CatgaCollector(m))
    msg = BenchRequest(qos=QoS.AT_MOST_ONCE)
    r = await m.send(msg)
    assert r.error is None, r
    res = await compare({"floor": _await_loop(ok_handler, msg),
                         "send_full": _await_loop(m.send, msg)}, iterations, repeats)
    fig = _figure("send_full", "send + limiter + breaker + timing (QoS 0)", res["send_full"],
                  FLOOR_SEND, res["floor"], LIMIT_SEND_FULL)

    def scrape(n: int) -> None:
        for _ in range(n):
            generate_latest(registry)

    scrape_res = await compare({"scrape": _sync(scrape)}, max(1, scrapes), repeats)
    scrape_us = _median(scrape_res["scrape"]) / 1000.0
    text = generate_latest(registry).decode()
    return Section(
        "send_full", "send with limiter + breaker + metrics", [fig],
        info={"scrape_us": round(scrape_us, 2), "scrape_bytes": len(text),
              "scrape_samples_us": [round(s / 1000.0, 2) for s in scrape_res["scrape"]]},
    )


async def bench_publish(iterations: int, repeats: int, fanout: int = 100) -> Section:
    """publish to 1 and to ``fanout`` never-suspending handlers vs plain loops over them
    (QoS 0 judged; QoS 1 informational)."""
    figures: list[Figure] = []
    for count in (1, fanout):
        handlers = [make_event_handler() for _ in range(count)]
        m = Mediator(timing=False)
        for i, h in enumerate(handlers):
            m.subscribe(BenchEvent, h, name=f"h{i:03d}")
        evt0 = BenchEvent(qos=QoS.AT_MOST_ONCE)
        evt1 = BenchEvent(qos=QoS.AT_LEAST_ONCE)
        for e in (evt0, evt1):
            r = await m.publish(e)
            assert r.value is not None and r.value.succeeded == count, r

        async def floor(n: int, hs: list[Callable[[Any], Awaitable[None]]] = handlers,
                        e: BenchEvent = evt0) -> None:
            for _ in range(n):
                for h in hs:
                    await h(e)

        n = max(1, iterations // count) if count > 1 else iterations
        res = await compare({"floor": floor,
                             "qos0": _await_loop(m.publish, evt0),
                             "qos1": _await_loop(m.publish, evt1)}, n, repeats)
        floor_label = f"for h in handlers: await h(evt)  ({count} handler{'s' * (count > 1)})"
        limit = LIMIT_PUBLISH_100 if count == fanout else None
        figures.append(_figure(f"publish_{count}", f"publish to {count} (QoS 0)", res["qos0"],
                               floor_label, res["floor"], limit))
        figures.append(_figure(f"publish_{count}_qos1", f"publish to {count} (QoS 1, wait)",
                               res["qos1"], floor_label, res["floor"]))
    return Section("publish", "publish (fan-out)", figures,
                   info={"fanout": fanout, "limit_applies_to": f"publish_{fanout}"})


async def bench_metrics(iterations: int, repeats: int) -> Section:
    """What timing costs per message (send ``timing=True`` minus ``timing=False``), and what
    ``prometheus_client`` instruments would cost per call instead."""
    msg = BenchRequest(qos=QoS.AT_MOST_ONCE)
    mediators: dict[str, Mediator] = {}
    for timing in (False, True):
        m = Mediator(timing=timing)
        m.register(BenchRequest, ok_handler)
        await m.send(msg)
        mediators[f"timing_{str(timing).lower()}"] = m
    registry = CollectorRegistry()
    counter = Counter("bench_messages", "bench", registry=registry)
    hist = Histogram("bench_duration_milliseconds", "bench", registry=registry,
                     buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 75, 100, 250, 500, 1000))
    ours = BucketHistogram()

    def inc(n: int) -> None:
        c = counter.inc
        for _ in range(n):
            c()

    def observe(n: int) -> None:
        o = hist.observe
        for _ in range(n):
            o(0.3)

    def bucket(n: int) -> None:
        o = ours.observe
        for _ in range(n):
            o(0.3)

    res = await compare({
        "floor": _await_loop(ok_handler, msg),
        "timing_false": _await_loop(mediators["timing_false"].send, msg),
        "timing_true": _await_loop(mediators["timing_true"].send, msg),
        "counter_inc": _sync(inc),
        "histogram_observe": _sync(observe),
        "bucket_observe": _sync(bucket),
    }, iterations, repeats)
    floor = res["floor"]
    diff = [t - f for t, f in zip(res["timing_true"], res["timing_false"], strict=True)]
    prom = [c + h for c, h in zip(res["counter_inc"], res["histogram_observe"], strict=True)]
    figures = [
        _figure("send_timing_false", "send, timing=False", res["timing_false"], FLOOR_SEND, floor),
        _figure("send_timing_true", "send, timing=True", res["timing_true"], FLOOR_SEND, floor),
        _figure("timing_cost", "metrics cost per message (timing=True - timing=False)", diff,
                FLOOR_SEND, floor),
        _figure("prom_counter_inc", "prometheus_client Counter.inc()", res["counter_inc"],
                FLOOR_SEND, floor),
        _figure("prom_histogram_observe", "prometheus_client Histogram.observe()",
                res["histogram_observe"], FLOOR_SEND, floor),
        _figure("prom_per_message", "prometheus_client per message (1 inc + 1 observe)", prom,
                FLOOR_SEND, floor),
        _figure("bucket_observe", "core BucketHistogram.observe() (what timing uses)",
                res["bucket_observe"], FLOOR_SEND, floor),
    ]
    return Section(
        "metrics", "metrics cost per message", figures,
        notes=["per-call instrument costs include the loop's own overhead (~10-20 ns)",
               "CatgaCollector reads plain counters at scrape time: nothing per message "
               "beyond the timing histogram above"],
    )


async def bench_breaker(iterations: int, repeats: int) -> Section:
    """Our ``CircuitBreaker.allow()+record_success()`` per call vs purgatory's
    ``AsyncCircuitBreakerFactory`` breaker (reused, and fetched with ``get_breaker`` per call)."""
    msg = BenchRequest(qos=QoS.AT_MOST_ONCE)
    breaker = CircuitBreaker("bench")

    def ours(n: int) -> None:
        allow, ok = breaker.allow, breaker.record_success
        for _ in range(n):
            if allow():
                ok()

    loops: dict[str, LoopFn] = {"floor": _await_loop(ok_handler, msg), "catga": _sync(ours)}
    counts: dict[str, int] = {"floor": iterations, "catga": iterations}
    try:
        from purgatory import AsyncCircuitBreakerFactory
    except ImportError:
        purgatory_version = None
    else:
        import purgatory

        purgatory_version = getattr(purgatory, "__version__", "?")
        factory = AsyncCircuitBreakerFactory()
        reused = await factory.get_breaker("x")

        async def purg_reused(n: int) -> None:
            b = reused
            for _ in range(n):
                async with b:
                    pass

        async def purg_get(n: int) -> None:
            get = factory.get_breaker
            for _ in range(n):
                async with await get("x"):
                    pass

        loops["purgatory"] = purg_reused
        loops["purgatory_get"] = purg_get
        counts["purgatory"] = max(1, iterations // 4)
        counts["purgatory_get"] = max(1, iterations // 20)
    res = await compare(loops, counts, repeats)
    floor = res["floor"]
    figures = [_figure("catga", "catga CircuitBreaker allow()+record_success()", res["catga"],
                       FLOOR_SEND, floor)]
    section = Section("breaker", "circuit breaker per call", figures)
    if purgatory_version is None:
        section.skipped = "skipped (purgatory not installed)"
        return section
    figures.append(_figure("purgatory", "purgatory `async with breaker:` (breaker reused)",
                           res["purgatory"], FLOOR_SEND, floor))
    figures.append(_figure("purgatory_get",
                           'purgatory `async with await factory.get_breaker("x"):`',
                           res["purgatory_get"], FLOOR_SEND, floor))
    section.info = {
        "purgatory_version": purgatory_version,
        "purgatory_reused_over_catga": round(_median(res["purgatory"]) / _median(res["catga"]),
                                             2),
    }
    section.notes.append("breaker-only loops (no handler inside); ratio = breaker cost / floor")
    return section


def embedded_scenario() -> Scenario:
    """Like ``scenarios/high_throughput.py``: one stream, one ``Fast`` handler, QoS 0."""
    return Scenario(
        name="bench_embedded",
        rate=EMBEDDED_RATES[0],
        qos=0,
        streams=[Stream("PriceTick", handlers=[HandlerSpec("apply", Fast())])],
        slo=SLOTargets(p99_ms=EMBEDDED_P99_MS),
    )


async def embedded_step(rate: float, duration_s: float) -> EmbeddedStep:
    """Offer ``rate`` msg/s for ``duration_s`` from a fresh :class:`Generator` to the embedded
    core on the running loop; return the achieved rate and the latency percentiles of that
    step."""
    driver = Generator(RunPlan.of(embedded_scenario()), EmbeddedTarget())
    t0 = time.perf_counter()
    await driver.start()
    driver.set_producer_rate(1, rate)
    await asyncio.sleep(duration_s)
    elapsed = time.perf_counter() - t0
    st = driver.streams[0]
    completed = st.completed
    driver.set_producer_rate(1, 0)
    payload = await driver.finish()
    stream = payload.streams[st.spec.name]
    h = st.latency

    cpu = payload.cpu_s.get("loop_thread")
    loop_cpu = round(cpu / elapsed, 3) if cpu is not None and elapsed > 0 else None

    def pct(p: float) -> float | None:
        if h.get_total_count() == 0:
            return None
        return round(h.get_value_at_percentile(p) / 1000.0, 3)

    return EmbeddedStep(
        offered=float(rate),
        duration_s=elapsed,
        sent=stream.sent,
        completed=completed,
        failed=stream.failed,
        achieved=completed / elapsed if elapsed > 0 else 0.0,
        p50_ms=pct(50),
        p99_ms=pct(99),
        max_ms=round(h.get_max_value() / 1000.0, 3) if h.get_total_count() else None,
        loop_cpu=loop_cpu,
    )


async def bench_embedded(
    rates: Sequence[float] = EMBEDDED_RATES,
    step_s: float = 5.0,
    on_step: Callable[[EmbeddedStep], None] | None = None,
) -> EmbeddedResult:
    """Step the offered rate up until the first unsustained step."""
    steps: list[EmbeddedStep] = []
    for rate in rates:
        step = await embedded_step(rate, step_s)
        steps.append(step)
        if on_step is not None:
            on_step(step)
        gc.collect()
        if not step.sustained:
            break
    return EmbeddedResult(steps, step_s)


# --------------------------------------------------------------------------- the suite
@dataclass(frozen=True, slots=True)
class Budget:
    """Iteration counts and repeats for one run of the suite."""

    repeats: int
    send: int
    send_full: int
    publish: int
    metrics: int
    breaker: int
    scrapes: int
    step_s: float
    rates: tuple[int, ...] = EMBEDDED_RATES

    @classmethod
    def for_run(cls, quick: bool) -> Budget:
        """The default budget (or the ``--quick`` one)."""
        if quick:
            return cls(repeats=3, send=60_000, send_full=30_000, publish=60_000, metrics=40_000,
                       breaker=60_000, scrapes=50, step_s=3.0, rates=EMBEDDED_RATES_QUICK)
        return cls(repeats=5, send=150_000, send_full=80_000, publish=150_000, metrics=100_000,
                   breaker=150_000, scrapes=200, step_s=5.0)


@dataclass(slots=True)
class SuiteResult:
    """Everything one run measured."""

    sections: dict[str, Section] = field(default_factory=dict)
    embedded: EmbeddedResult | None = None
    elapsed_s: float = 0.0

    def limits(self) -> list[Figure]:
        """Figures with an acceptance limit."""
        return [f for s in self.sections.values() for f in s.figures if f.limit is not None]

    @property
    def passed(self) -> bool:
        """True when every limit holds."""
        return all(f.passed for f in self.limits())


def _us(ns: float) -> str:
    return f"{ns / 1000.0:.3f}"


def _ns(ns: float) -> str:
    return f"{ns:,.0f}"


def _verdict(f: Figure) -> str:
    if f.passed is None:
        return "[dim]info[/dim]"
    return "[green]PASS[/green]" if f.passed else "[bold red]FAIL[/bold red]"


def _print_section(console: Console, section: Section) -> None:
    table = Table(title=section.title, title_justify="left", show_lines=False)
    table.add_column("figure")
    table.add_column("ns/op", justify="right")
    table.add_column("floor")
    table.add_column("floor ns/op", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("limit", justify="right")
    table.add_column("", justify="center")
    for f in section.figures:
        table.add_row(f.label, _ns(f.ns), f.floor_label, _ns(f.floor_ns), f"{f.ratio:.2f}x",
                      "-" if f.limit is None else f"<= {f.limit:g}x", _verdict(f))
    console.print(table)
    if section.skipped:
        console.print(f"  {section.skipped}")
    for k, v in section.info.items():
        if k.endswith("_samples_us"):
            continue
        console.print(f"  {k}: {v}")
    for note in section.notes:
        console.print(f"  [dim]note: {note}[/dim]")


def _print_breaker(console: Console, section: Section) -> None:
    table = Table(title=section.title, title_justify="left")
    table.add_column("breaker")
    table.add_column("µs/call", justify="right")
    table.add_column("floor")
    table.add_column("floor µs", justify="right")
    table.add_column("ratio", justify="right")
    for f in section.figures:
        table.add_row(f.label, _us(f.ns), f.floor_label, _us(f.floor_ns), f"{f.ratio:.2f}x")
    console.print(table)
    if section.skipped:
        console.print(f"  purgatory: {section.skipped}")
    for k, v in section.info.items():
        console.print(f"  {k}: {v}")
    for note in section.notes:
        console.print(f"  [dim]note: {note}[/dim]")


def _print_metrics(console: Console, section: Section) -> None:
    table = Table(title=section.title, title_justify="left")
    table.add_column("figure")
    table.add_column("ns/op", justify="right")
    table.add_column("floor")
    table.add_column("floor ns/op", justify="right")
    table.add_column("ratio", justify="right")
    for f in section.figures:
        table.add_row(f.label, _ns(f.ns), f.floor_label, _ns(f.floor_ns), f"{f.ratio:.2f}x")
    console.print(table)
    for note in section.notes:
        console.print(f"  [dim]note: {note}[/dim]")


def _print_embedded(console: Console, result: EmbeddedResult) -> None:
    table = Table(title=f"embedded core: maximum sustainable rate ({result.step_s:g} s/step)",
                  title_justify="left")
    for col in ("offered msg/s", "achieved msg/s", "achieved %", "p50 ms", "p99 ms", "max ms",
                "loop CPU %", "sustained"):
        table.add_column(col, justify="right")
    for s in result.steps:
        table.add_row(
            f"{s.offered:,.0f}", f"{s.achieved:,.0f}", f"{100 * s.achieved / s.offered:.1f}",
            "-" if s.p50_ms is None else f"{s.p50_ms:.3f}",
            "-" if s.p99_ms is None else f"{s.p99_ms:.3f}",
            "-" if s.max_ms is None else f"{s.max_ms:.1f}",
            "-" if s.loop_cpu is None else f"{100 * s.loop_cpu:.0f}",
            "[green]yes[/green]" if s.sustained else "[red]no[/red]",
        )
    console.print(table)
    best = result.max_sustainable
    if best is None:
        console.print("  maximum sustainable rate: [red]none[/red] (the first step failed)")
    elif result.capped:
        console.print(f"  maximum sustainable rate: >= {best:,.0f} msg/s "
                      "(every step sustained; the ceiling is higher)")
    else:
        console.print(f"  maximum sustainable rate: [bold]{best:,.0f} msg/s[/bold]")
    console.print(
        f"  [dim]note: sustained = achieved >= {EMBEDDED_MIN_ACHIEVED:.0%} of offered and "
        f"P99 < {EMBEDDED_P99_MS:g} ms (latency from the intended send time). The generator "
        "runs on the same loop as the core (no Locust, no bridge): this is the core's own "
        "ceiling, informational.[/dim]"
    )


async def run_suite(
    names: Sequence[str],
    budget: Budget,
    console: Console | None = None,
) -> SuiteResult:
    """Run the named benchmarks (in :data:`BENCH_NAMES` order), printing each as it ends."""
    out = SuiteResult()
    t0 = time.perf_counter()
    b = budget
    for name in BENCH_NAMES:
        if name not in names:
            continue
        if name == "send":
            section = await bench_send(b.send, b.repeats)
        elif name == "send_full":
            section = await bench_send_full(b.send_full, b.repeats, b.scrapes)
        elif name == "publish":
            section = await bench_publish(b.publish, b.repeats)
        elif name == "metrics":
            section = await bench_metrics(b.metrics, b.repeats)
        elif name == "breaker":
            section = await bench_breaker(b.breaker, b.repeats)
        else:
            if console is not None:
                rates = ", ".join(f"{r:,}" for r in b.rates)
                console.print(f"[dim]embedded: stepping {rates} msg/s, {b.step_s:g} s each, "
                              "until the first unsustained step...[/dim]")
            out.embedded = await bench_embedded(b.rates, b.step_s)
            if console is not None:
                _print_embedded(console, out.embedded)
            continue
        out.sections[name] = section
        if console is not None:
            if name == "breaker":
                _print_breaker(console, section)
            elif name == "metrics":
                _print_metrics(console, section)
            else:
                _print_section(console, section)
    out.elapsed_s = time.perf_counter() - t0
    return out


def to_json(result: SuiteResult, *, quick: bool, budget: Budget, loop: str) -> dict[str, Any]:
    """The ``--json`` document: every figure (costs in ns), limits, verdicts and context."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loop": loop,
        "quick": quick,
        "repeats": budget.repeats,
        "budget": {k: getattr(budget, k) for k in budget.__slots__},
        "benchmarks": {name: s.to_dict() for name, s in result.sections.items()},
        "embedded": result.embedded.to_dict() if result.embedded is not None else None,
        "limits": [{"name": f.name, "ratio": round(f.ratio, 3), "limit": f.limit,
                    "passed": f.passed, "ns": round(f.ns, 2), "floor_ns": round(f.floor_ns, 2)}
                   for f in result.limits()],
        "passed": result.passed,
        "comparison_note": COMPARISON_NOTE,
        "elapsed_s": round(result.elapsed_s, 2),
    }


def _parse_only(text: str, parser: argparse.ArgumentParser) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCH_NAMES]
    if unknown or not names:
        parser.error(f"--only: unknown benchmark(s) {', '.join(unknown) or '(none given)'}; "
                     f"choose from {', '.join(BENCH_NAMES)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    """The ``catga-bench bench`` argument parser."""
    p = argparse.ArgumentParser(
        prog="catga-bench bench",
        description="Benchmark the reference core: each figure is a ratio to a floor measured "
                    "in the same run. Exit 0 when every limit holds, 1 otherwise.",
    )
    p.add_argument("--quick", action="store_true",
                   help="3 repeats and shorter loops and steps (under ~25 s)")
    p.add_argument("--json", metavar="PATH", type=Path, default=None,
                   help="also write every figure to this JSON file")
    p.add_argument("--only", metavar="NAME[,NAME]", default=None,
                   help=f"run a subset: {', '.join(BENCH_NAMES)}")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the suite; return 0 when every limit holds, 1 otherwise."""
    parser = build_parser()
    args = parser.parse_args(argv)
    names = _parse_only(args.only, parser) if args.only else list(BENCH_NAMES)
    budget = Budget.for_run(args.quick)
    console = Console(width=None if sys.stdout.isatty() else 140)
    loop = loop_kind()
    console.print(
        f"[bold]catga-bench bench[/bold]  Python {platform.python_version()} "
        f"({platform.python_implementation()}), loop: {loop}, "
        f"median of {budget.repeats} repeats{' (--quick)' if args.quick else ''}, GC off in "
        "timed loops; ratios are against a floor measured in this run"
    )
    result = run_on_loop(run_suite(names, budget, console))

    console.print(f"[bold]comparison context[/bold] (not measured here): {COMPARISON_NOTE}")
    limits = result.limits()
    if limits:
        console.print()
        for f in limits:
            verdict = "[green]PASS[/green]" if f.passed else "[bold red]FAIL[/bold red]"
            console.print(f"{verdict}  {f.name}: {f.ratio:.2f}x <= {f.limit:g}x "
                          f"({_ns(f.ns)} ns vs floor {_ns(f.floor_ns)} ns)")
    console.print(f"[dim]finished in {result.elapsed_s:.1f} s[/dim]")
    if args.json is not None:
        doc = to_json(result, quick=args.quick, budget=budget, loop=loop)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        console.print(f"[dim]wrote {args.json}[/dim]")
    return 0 if result.passed else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
