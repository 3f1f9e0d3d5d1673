"""``failing_messages``: the first lost, late and duplicated messages are named in the report
with their correlation ids, times and outputs, so a user can find them in their own logs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from catga_bench import profiles
from catga_bench.generator.generator import Generator
from catga_bench.generator.ledger import StreamLedger
from catga_bench.generator.payload import RunPayload
from catga_bench.judge.gate import RunFacts, build_report
from catga_bench.judge.markdown import render_markdown
from catga_bench.targets.base import OutcomeSink, SystemFigures, Target
from catga_bench.workload.plan import RunPlan
from catga_bench.workload.profiles import HandlerSpec
from catga_bench.workload.scenario import Scenario, Stream
from catga_bench.workload.slo import SLOTargets
from core import Result


class FaultyTarget(Target):
    """Handler "b" never handles every ``lose_every``-th message (lost); every
    ``dup_every``-th is handled twice by "a"; a lost message listed in ``late`` gets an
    output after the deadline."""

    name = "faulty"

    def __init__(self, lose_every: int = 0, dup_every: int = 0,
                 late: tuple[int, ...] = ()) -> None:
        self.lose_every, self.dup_every, self.late = lose_every, dup_every, late

    async def open(self, plan: RunPlan, sink: OutcomeSink) -> None:
        self.plan, self.sink = plan, sink

    def correlation_id(self, stream: int, seq: int) -> str:
        return f"run7.{stream}.{seq}"

    def offer(self, stream: int, seq: int, copies: int = 1) -> None:
        self.sink.accepted(stream, seq)
        if self.lose_every and seq % self.lose_every == 0:
            return  # acknowledged, never handled: lost (never completes)
        self.sink.handled(stream, 0, seq)
        self.sink.handled(stream, 1, seq)
        self.sink.completed(stream, seq, Result.success(None))
        if self.dup_every and seq % self.dup_every == 1:
            self.sink.handled(stream, 0, seq)

    async def close(self, drain_timeout_s: float) -> SystemFigures:
        for seq in self.late:
            self.sink.output_class("late", "orders.confirmed", self.correlation_id(0, seq),
                                   "after the drain deadline", (0, seq))
        return SystemFigures()


def _report(target: Target, slo: SLOTargets | None = None) -> dict[str, Any]:
    scenario = Scenario(name="failing", rate=400, qos=1, streams=[Stream("Ev", handlers=[
        HandlerSpec("a", profiles.Fast()), HandlerSpec("b", profiles.Fast())])])

    async def run() -> dict[str, Any]:
        generator = Generator(RunPlan.of(scenario), target)
        started = time.time()
        await generator.start()
        generator.set_producer_rate(1, 400)
        await asyncio.sleep(1.0)
        stopped = time.time()
        payload = await generator.finish(drain_timeout_s=0.2)
        payload = RunPayload.from_dict(payload.to_dict())  # as a worker ships it
        return build_report(payload, RunFacts("failing", target.name, 1, 400, started, None,
                                              stopped), slo or SLOTargets(p99_ms=50.0))

    return asyncio.run(run())


def test_lost_messages_are_named_with_their_ids_and_times() -> None:
    report = _report(FaultyTarget(lose_every=50, late=(50,)))
    failing = report["failing_messages"]
    assert report["lost"] > 0
    assert [m["seq"] for m in failing] == list(range(0, 50 * len(failing), 50))[:20]
    assert len(failing) == min(20, report["lost"] // 2)  # two handlers missed each
    first, second = failing[0], failing[1]
    assert first == {**first, "kind": "lost", "stream": "Ev", "correlation_id": "run7.0.0",
                     "handlers": ["a", "b"], "outputs": [], "observed_at": None}
    assert first["intended_at"].endswith("Z") and first["sent_at"] >= first["intended_at"]
    assert second["kind"] == "late" and second["correlation_id"] == "run7.0.50"
    assert [o["kind"] for o in second["outputs"]] == ["late"]
    assert second["outputs"][0]["output"] == "orders.confirmed"
    assert "run7.0.0" in render_markdown(report)


def test_duplicated_messages_show_both_outputs() -> None:
    report = _report(FaultyTarget(dup_every=40))
    failing = report["failing_messages"]
    assert report["duplicates"] > 0 and report["lost"] == 0
    assert len(failing) == min(20, report["duplicates"])
    m = failing[0]
    assert m["kind"] == "duplicate" and m["correlation_id"] == "run7.0.1"
    assert m["handlers"] == ["a"]
    assert [o["kind"] for o in m["outputs"]] == ["handled", "duplicate"]
    assert m["observed_at"] == m["outputs"][0]["at"] >= m["intended_at"]


def test_a_clean_run_has_no_failing_messages() -> None:
    report = _report(FaultyTarget())
    assert report["failing_messages"] == [] and report["lost"] == 0
    assert "Failing messages" not in render_markdown(report)


def test_merging_workers_keeps_the_first_twenty_by_intended_time() -> None:
    from catga_bench.generator.failing import FailingMessage

    def part(offset: int) -> RunPayload:
        return RunPayload(failing_messages=[FailingMessage(
            kind="lost", stream="Ev", seq=i, correlation_id=f"g{offset}.{i}",
            intended_at=f"2026-12-06T00:00:{i + offset:02d}.000Z") for i in range(15)])

    merged = RunPayload.merge([part(0), part(1)])
    times = [m.intended_at for m in merged.failing_messages]
    assert len(times) == 20 and times == sorted(times)
    assert times[0].endswith("00.000Z") and times[-1] < "2026-12-06T00:00:11"


def test_the_ledger_lists_lost_messages_with_the_handlers_that_missed_them() -> None:
    ledger = StreamLedger(["a", "b"])
    for seq in range(6):
        ledger.record_sent()
        ledger.record_acked(seq)
        if seq != 2:
            ledger.record_handled(0, seq)
        if seq not in (2, 4):
            assert ledger.record_handled(1, seq) == 1
    ledger.record_failed(1, 4)  # a known failure is not a loss
    assert ledger.record_handled(0, 5) == 2
    assert ledger.lost_seqs(10) == [(2, ["a", "b"])]
    assert ledger.lost_seqs(0) == []


def test_qos_1_duplicates_are_reported_and_gated_only_by_the_budget() -> None:
    """At-least-once allows duplicates: reported, not gated — unless a budget is set, which
    a service that emits 2.5% of its outputs twice exceeds."""
    free = _report(FaultyTarget(dup_every=40))
    assert free["duplicates_by_qos"] == {"1": free["duplicates"]} and free["duplicates"] > 5
    assert free["exit_code"] == 0, free["verdict"]
    budget = _report(FaultyTarget(dup_every=40),
                     SLOTargets(p99_ms=50.0, max_duplicate_ratio=0.001))
    assert budget["exit_code"] == 1
    row = next(r for r in budget["slo"] if r["name"] == "duplicate_ratio")
    assert not row["passed"] and 0.005 < row["value"] < 0.02  # 1 in 40 of 2 handlings
    roomy = _report(FaultyTarget(dup_every=40), SLOTargets(p99_ms=50.0, max_duplicate_ratio=0.05))
    assert roomy["exit_code"] == 0, roomy["verdict"]
