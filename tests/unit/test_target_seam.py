"""The seam is narrow: a dozen-line fake system under test, whose outcomes are scripted, runs a
scenario end to end through the real generator, ledger and judge."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from catga_bench import profiles
from catga_bench.errors import EXIT_FAIL, EXIT_PASS
from catga_bench.generator.generator import Generator
from catga_bench.judge.gate import RunFacts, build_report
from catga_bench.targets.base import OutcomeSink, SystemFigures, Target
from catga_bench.workload.plan import RunPlan
from catga_bench.workload.profiles import HandlerSpec
from catga_bench.workload.scenario import Scenario, Stream
from catga_bench.workload.slo import SLOTargets
from core import Result


class ScriptedTarget(Target):
    """Every message is accepted; each ``lose_every``-th is never handled by handler 1."""

    name = "scripted"

    def __init__(self, lose_every: int = 0, stray_every: int = 0) -> None:
        self.lose_every = lose_every
        self.stray_every = stray_every  # an output nobody asked for, every N messages

    async def open(self, plan: RunPlan, sink: OutcomeSink) -> None:
        self.plan, self.sink = plan, sink

    def offer(self, stream: int, seq: int, copies: int = 1) -> None:
        for h in range(len(self.plan.streams[stream].handlers)):
            if not (h == 1 and self.lose_every and seq % self.lose_every == 0):
                self.sink.handled(stream, h, seq)
        self.sink.completed(stream, seq, Result.success(None))
        if self.stray_every and seq % self.stray_every == 0:
            self.sink.output_class("unexpected", "orders.confirmed", f"x-{seq}", "no such id")

    async def close(self, drain_timeout_s: float) -> SystemFigures:
        return SystemFigures()


def _judged(target: Target, rate: float = 400.0,
            sut: dict[str, Any] | None = None) -> dict[str, Any]:
    scenario = Scenario(name="seam", rate=rate, qos=1, streams=[Stream("Ev", handlers=[
        HandlerSpec("a", profiles.Fast()), HandlerSpec("b", profiles.Fast())])])

    async def run() -> dict[str, Any]:
        generator = Generator(RunPlan.of(scenario), target)
        started = time.time()
        await generator.start()
        generator.set_producer_rate(1, rate)
        await asyncio.sleep(1.0)
        stopped = time.time()
        payload = await generator.finish()
        facts = RunFacts("seam", target.name, 1, rate, started, None, stopped)
        if sut is not None:
            facts.sut = sut
        return build_report(payload, facts, SLOTargets(p99_ms=50.0))

    return asyncio.run(run())


def test_a_faithful_fake_system_passes_the_gate() -> None:
    report = _judged(ScriptedTarget())
    assert report["exit_code"] == EXIT_PASS, report["verdict"]
    assert report["transport"] == "scripted"
    assert report["sent"] > 300
    assert report["handled"] == 2 * report["sent"]
    assert report["lost"] == 0


def test_a_fake_system_that_loses_messages_fails_the_gate_on_lost() -> None:
    report = _judged(ScriptedTarget(lose_every=10))
    assert report["exit_code"] == EXIT_FAIL
    assert report["lost"] == (report["sent"] + 9) // 10  # seq 0, 10, 20, ... of handler "b"
    assert [r["name"] for r in report["slo"] if not r["passed"]] == ["lost"]


def test_draining_counts_idle_time_from_the_start_of_the_wait() -> None:
    """A quiet spell before the run ended (a core being restarted) must not cut the drain
    short: the outcomes it owes may still come (regression: the wait ended at once)."""
    from catga_bench.targets.base import wait_for_outcomes

    class Quiet:
        in_flight = 5
        last_outcome_at = time.perf_counter() - 60.0  # nothing arrived for a minute

        def pending_streams(self) -> set[int]:
            return {0}

    async def wait() -> float:
        t = time.perf_counter()
        await wait_for_outcomes(Quiet(), t + 5.0, idle_limit_s=0.3,  # type: ignore[arg-type]
                                idle_streams_s=({0}, 0.3))
        return time.perf_counter() - t

    assert 0.3 <= asyncio.run(wait()) < 2.0


def test_outputs_that_complete_nothing_are_counted_and_fail_a_black_box_run() -> None:
    black_box = {"kind": "asyncapi", "spec": "orders.yaml", "channels": ["orders.confirmed"]}
    report = _judged(ScriptedTarget(stray_every=100), sut=black_box)
    assert report["sut"] == black_box
    assert report["unexpected"] == (report["sent"] + 99) // 100
    assert report["output_samples"][0] == {"kind": "unexpected", "channel": "orders.confirmed",
                                           "correlation_id": "x-0", "reason": "no such id",
                                           "at_s": report["output_samples"][0]["at_s"]}
    assert len(report["output_samples"]) == min(10, report["unexpected"])
    assert report["exit_code"] == EXIT_FAIL
    assert [r["name"] for r in report["slo"] if not r["passed"]] == ["unexpected"]
    # the reference core has no outputs to read back: the same counts are not its targets
    core = _judged(ScriptedTarget(stray_every=100))
    assert core["sut"]["kind"] == "core" and core["exit_code"] == EXIT_PASS
