"""docs/report.md stays true: the keys it documents for report.json (and its timeline) are the
keys a real run's report has — none missing, none undocumented."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest

from catga_bench import profiles
from catga_bench.generator.generator import Generator
from catga_bench.generator.payload import RunPayload
from catga_bench.judge.gate import RunFacts, build_report
from catga_bench.targets.embedded import EmbeddedTarget
from catga_bench.workload.plan import RunPlan
from catga_bench.workload.profiles import HandlerSpec
from catga_bench.workload.scenario import Scenario, Stream
from catga_bench.workload.slo import SLOTargets

DOC = Path(__file__).resolve().parents[2] / "docs" / "report.md"
#: written only over a broker (the generator's own memory beside the serving core's)
BROKER_ONLY = {"generator_rss_mb"}


def _documented(section: str) -> set[str]:
    """The backticked names in the first column of the table under ``section``."""
    text = DOC.read_text(encoding="utf-8")
    body = text.split(section, 1)[1]
    keys: set[str] = set()
    in_table = False
    for line in body.splitlines():
        if line.startswith("|"):
            in_table = True
            first = line.split("|")[1]
            keys |= set(re.findall(r"`([a-z0-9_]+)`", first))
        elif in_table:
            break
    return keys


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    scenario = Scenario(name="schema", rate=300, qos=1, streams=[Stream("Ev", handlers=[
        HandlerSpec("fast", profiles.Fast())])])

    async def main() -> tuple[RunPayload, float, float]:
        gen = Generator(RunPlan.of(scenario), EmbeddedTarget())
        started = time.time()
        await gen.start()
        gen.set_producer_rate(1, 300)
        await asyncio.sleep(1.2)
        stopped = time.time()
        payload = await gen.finish()
        return RunPayload.from_dict(payload.to_dict()), started, stopped

    payload, started, stopped = asyncio.run(main())
    facts = RunFacts("schema", "embedded", 1, 300, started, None, stopped)
    return build_report(payload, facts, SLOTargets())


def test_every_report_key_is_documented_and_every_documented_key_written(
        report: dict[str, Any]) -> None:
    documented = _documented("## report.json keys")
    assert len(documented) > 30  # the table was found
    assert set(report) - documented == set(), "keys missing from docs/report.md"
    assert documented - BROKER_ONLY - set(report) == set(), "documented keys not written"


def test_timeline_series_are_documented(report: dict[str, Any]) -> None:
    documented = _documented("### timeline")
    assert set(report["timeline"]) == documented


def test_stream_and_breaker_fields_are_documented(report: dict[str, Any]) -> None:
    text = DOC.read_text(encoding="utf-8")
    streams_row = next(line for line in text.splitlines() if line.startswith("| `streams`"))
    breaker_row = next(line for line in text.splitlines() if line.startswith("| `breaker`"))
    for key in report["streams"]["Ev"]:
        assert f"`{key}`" in streams_row, key
    for key in report["breaker"]:
        assert f"`{key}`" in breaker_row, key


def test_sut_process_fields_are_documented(tmp_path: Path) -> None:
    """``sut.process`` (a service the harness started) is in docs/report.md, key for key."""
    from catga_bench.targets.sut_process import SutProcess
    from catga_bench.workload.asyncapi import ProcessExt, ReadyCheck

    process = ProcessExt(command=["true"], cwd=tmp_path, ready=ReadyCheck(tcp="127.0.0.1:1"))
    facts = SutProcess(process, {}, tmp_path, "svc").facts()
    text = DOC.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `sut.process`"))
    documented = set(re.findall(r"\{([a-z_, ]+)\}", row)[0].replace(" ", "").split(","))
    assert documented == set(facts)
    sut_row = next(line for line in text.splitlines() if line.startswith("| `sut` "))
    assert "`process`" in sut_row
