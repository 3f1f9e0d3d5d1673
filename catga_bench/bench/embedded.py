"""The ``embedded`` benchmark of ``catga-bench bench``: the maximum sustainable rate of the load
generator driving the embedded core on one event loop.

The offered rate steps up through :data:`EMBEDDED_RATES` (each step a fresh
:class:`~catga_bench.generator.generator.Generator`) until the first step that is not sustained:
achieved below :data:`EMBEDDED_MIN_ACHIEVED` of offered, or P99 (from the intended send time) at
or above :data:`EMBEDDED_P99_MS`. Informational: no limit is judged.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from catga_bench.generator.generator import Generator
from catga_bench.targets.embedded import EmbeddedTarget
from catga_bench.workload.plan import RunPlan
from catga_bench.workload.profiles import Fast, HandlerSpec
from catga_bench.workload.scenario import Scenario, Stream
from catga_bench.workload.slo import SLOTargets

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
