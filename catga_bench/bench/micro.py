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

This module holds the mediator benchmarks, the suite that runs them and the command line;
``timing.py`` measures, ``embedded.py`` is the embedded step search and ``printing.py`` the
console tables.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from rich.console import Console

from catga_bench.bench.embedded import (
    EMBEDDED_RATES,
    EMBEDDED_RATES_QUICK,
    EmbeddedResult,
    bench_embedded,
)
from catga_bench.bench.printing import print_embedded, print_limits, print_section
from catga_bench.bench.timing import (
    Figure,
    LoopFn,
    Section,
    compare,
    loop_kind,
    make_figure,
    median,
    run_on_loop,
    sync_loop,
)
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

BENCH_NAMES: tuple[str, ...] = ("send", "send_full", "publish", "metrics", "breaker", "embedded")

LIMIT_SEND = 5.0
LIMIT_SEND_FULL = 25.0
LIMIT_PUBLISH_100 = 3.0

COMPARISON_NOTE = (
    "fastest Python mediators measured elsewhere on this machine kind: send 8\u201314x, "
    "publish-to-100 4.6x; python-cqrs/lato default set-up 56\u2013290x"
)


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
    fig = make_figure("send", "send, no behaviours (QoS 0, timing=False)", res["send"],
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
    fig = make_figure("send_full", "send + limiter + breaker + timing (QoS 0)", res["send_full"],
                       FLOOR_SEND, res["floor"], LIMIT_SEND_FULL)

    def scrape(n: int) -> None:
        for _ in range(n):
            generate_latest(registry)

    scrape_res = await compare({"scrape": sync_loop(scrape)}, max(1, scrapes), repeats)
    scrape_us = median(scrape_res["scrape"]) / 1000.0
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
        figures.append(make_figure(f"publish_{count}", f"publish to {count} (QoS 0)", res["qos0"],
                                    floor_label, res["floor"], limit))
        figures.append(make_figure(f"publish_{count}_qos1", f"publish to {count} (QoS 1, wait)",
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
        "counter_inc": sync_loop(inc),
        "histogram_observe": sync_loop(observe),
        "bucket_observe": sync_loop(bucket),
    }, iterations, repeats)
    floor = res["floor"]
    diff = [t - f for t, f in zip(res["timing_true"], res["timing_false"], strict=True)]
    prom = [c + h for c, h in zip(res["counter_inc"], res["histogram_observe"], strict=True)]
    figures = [
        make_figure("send_timing_false", "send, timing=False", res["timing_false"],
                    FLOOR_SEND, floor),
        make_figure("send_timing_true", "send, timing=True", res["timing_true"],
                    FLOOR_SEND, floor),
        make_figure("timing_cost", "metrics cost per message (timing=True - timing=False)", diff,
                    FLOOR_SEND, floor),
        make_figure("prom_counter_inc", "prometheus_client Counter.inc()", res["counter_inc"],
                    FLOOR_SEND, floor),
        make_figure("prom_histogram_observe", "prometheus_client Histogram.observe()",
                    res["histogram_observe"], FLOOR_SEND, floor),
        make_figure("prom_per_message", "prometheus_client per message (1 inc + 1 observe)", prom,
                    FLOOR_SEND, floor),
        make_figure("bucket_observe", "core BucketHistogram.observe() (what timing uses)",
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

    loops: dict[str, LoopFn] = {"floor": _await_loop(ok_handler, msg), "catga": sync_loop(ours)}
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
    figures = [make_figure("catga", "catga CircuitBreaker allow()+record_success()", res["catga"],
                            FLOOR_SEND, floor)]
    section = Section("breaker", "circuit breaker per call", figures)
    if purgatory_version is None:
        section.skipped = "skipped (purgatory not installed)"
        return section
    figures.append(make_figure("purgatory", "purgatory `async with breaker:` (breaker reused)",
                                res["purgatory"], FLOOR_SEND, floor))
    figures.append(make_figure("purgatory_get",
                                'purgatory `async with await factory.get_breaker("x"):`',
                                res["purgatory_get"], FLOOR_SEND, floor))
    section.info = {
        "purgatory_version": purgatory_version,
        "purgatory_reused_over_catga": round(median(res["purgatory"]) / median(res["catga"]),
                                             2),
    }
    section.notes.append("breaker-only loops (no handler inside); ratio = breaker cost / floor")
    return section


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
                print_embedded(console, out.embedded)
            continue
        out.sections[name] = section
        if console is not None:
            print_section(console, section)
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
    print_limits(console, result.limits())
    console.print(f"[dim]finished in {result.elapsed_s:.1f} s[/dim]")
    if args.json is not None:
        doc = to_json(result, quick=args.quick, budget=budget, loop=loop)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        console.print(f"[dim]wrote {args.json}[/dim]")
    return 0 if result.passed else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
