"""docs/metrics.md is the single source of truth: it must list exactly what the collector
exports, with the same types and label keys."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from core import (
    BreakerConfig,
    CatgaCollector,
    ConcurrencyLimiter,
    Event,
    HandlerOptions,
    LoopLagMonitor,
    Mediator,
    Request,
    Result,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


@dataclass(slots=True)
class Ping(Request):
    n: int = 0


@dataclass(slots=True)
class Happened(Event):
    n: int = 0


def _doc_rows() -> dict[str, tuple[str, set[str]]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\| `(catga_[a-z_]+)` \| (\w+) \| [^|]+ \| ([^|]+) \|", line)
        if m:
            labels = set(re.findall(r"`([a-z_]+)`", m.group(3)))
            rows[m.group(1)] = (m.group(2), labels)
    return rows


def _exported() -> dict[str, tuple[str, set[str]]]:
    async def exercise() -> Mediator:
        m = Mediator(limiter=ConcurrencyLimiter(4, 4))

        async def ping(r: Ping) -> int:
            return r.n

        async def fails(e: Happened) -> Result[None]:
            raise RuntimeError("x")

        m.register(Ping, ping, options=HandlerOptions(breaker=BreakerConfig()))
        m.subscribe(Happened, fails, name="fails", options=HandlerOptions(breaker=BreakerConfig()))
        await m.send(Ping(n=1))
        await m.publish(Happened(qos=0))
        return m

    mediator = asyncio.run(exercise())
    registry = CollectorRegistry()
    registry.register(CatgaCollector(mediator, LoopLagMonitor()))
    from prometheus_client import generate_latest

    out = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        name = fam.name + ("_total" if fam.type == "counter" else "")
        labels: set[str] = set()
        for s in fam.samples:
            labels |= set(s.labels) - {"le"}
        out[name] = (fam.type, labels)
    return out


def _generator_exported() -> dict[str, tuple[str, set[str]]]:
    from catga_bench import profiles
    from catga_bench.generator.generator import Generator
    from catga_bench.generator.metrics import GeneratorCollector
    from catga_bench.targets.embedded import EmbeddedTarget
    from catga_bench.workload.plan import RunPlan
    from catga_bench.workload.scenario import Scenario, Stream

    handlers = [profiles.HandlerSpec("down", profiles.Failing(outage_start_s=0.0,
                                                              outage_end_s=60.0))]

    async def run() -> Generator:
        scenario = Scenario("doc", 100, [Stream("Tick", handlers=handlers)], qos=0)
        driver = Generator(RunPlan.of(scenario), EmbeddedTarget())
        await driver.start()
        driver.set_producer_rate(1, 200)
        await asyncio.sleep(0.2)
        await driver.finish()
        return driver

    driver = asyncio.run(run())
    registry = CollectorRegistry()
    registry.register(GeneratorCollector(driver, {"p99_ms": 100.0}))
    return _families(registry)


def _families(registry: CollectorRegistry) -> dict[str, tuple[str, set[str]]]:
    from prometheus_client import generate_latest

    out = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        name = fam.name + ("_total" if fam.type == "counter" else "")
        labels: set[str] = set()
        for s in fam.samples:
            labels |= set(s.labels) - {"le"}
        out[name] = (fam.type, labels)
    return out


def test_doc_lists_exactly_the_generator_metrics() -> None:
    doc = {k: v for k, v in _doc_rows().items() if k.startswith("catga_bench_")}
    exported = _generator_exported()
    assert set(doc) == set(exported), (set(doc) ^ set(exported))
    for name, (kind, labels) in exported.items():
        assert doc[name][0] == kind, name
        assert doc[name][1] == labels, (name, doc[name][1], labels)


def test_doc_lists_exactly_the_exported_metrics() -> None:
    doc = {k: v for k, v in _doc_rows().items()
           if not k.startswith(("catga_bench_", "catga_transport_"))}
    exported = _exported()
    assert len(doc) >= 20
    assert set(doc) == set(exported), (set(doc) ^ set(exported))
    for name, (kind, labels) in exported.items():
        assert doc[name][0] == kind, name
        assert doc[name][1] == labels, (name, doc[name][1], labels)


def test_doc_lists_exactly_the_transport_metrics() -> None:
    from core.transport import InMemoryTransport
    from core.transport.metrics import TransportCollector

    registry = CollectorRegistry()
    registry.register(TransportCollector(InMemoryTransport()))
    exported = _families(registry)
    doc = {k: v for k, v in _doc_rows().items() if k.startswith("catga_transport_")}
    assert len(exported) == 9
    assert set(doc) == set(exported), (set(doc) ^ set(exported))
    for name, (kind, labels) in exported.items():
        assert doc[name] == (kind, labels), name
