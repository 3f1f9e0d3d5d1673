"""Built-in logging and tracing behaviours."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from core import (
    ErrorCode,
    Event,
    LoggingBehavior,
    Mediator,
    QoS,
    Request,
    Result,
    TracingBehavior,
)


@dataclass(slots=True)
class Charge(Request):
    amount: int = 0


@dataclass(slots=True)
class Charged(Event):
    amount: int = 0


async def charge(r: Charge) -> Result[int]:
    if r.amount < 0:
        raise ValueError("negative amount")
    return Result.success(r.amount)


def test_logging_behavior_logs_failures_with_the_message_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def go() -> tuple[Result[int], Result[int], int]:
        m = Mediator(behaviors=[LoggingBehavior()])
        m.register(Charge, charge)
        bad = Charge(amount=-1, qos=QoS.AT_MOST_ONCE)
        return await m.send(Charge(amount=5)), await m.send(bad), bad.message_id

    with caplog.at_level(logging.WARNING, logger="catga.pipeline"):
        ok, bad, bad_id = asyncio.run(go())
    assert ok.value == 5
    assert bad.error is not None and bad.error.code is ErrorCode.HANDLER_FAILED
    lines = [r.getMessage() for r in caplog.records if r.name == "catga.pipeline"]
    assert len(lines) == 1
    assert str(bad_id) in lines[0] and "negative amount" in lines[0]


def test_tracing_behavior_records_a_span_per_handling_with_error_status() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    async def go() -> None:
        behavior = TracingBehavior()
        behavior.tracer = provider.get_tracer("test")
        m = Mediator(behaviors=[behavior])
        m.register(Charge, charge)

        async def a(e: Charged) -> None:
            return None

        async def b(e: Charged) -> None:
            return None

        m.subscribe(Charged, a, name="a")
        m.subscribe(Charged, b, name="b")
        await m.send(Charge(amount=3, correlation_id=42))
        await m.send(Charge(amount=-3, qos=QoS.AT_MOST_ONCE))
        await m.publish(Charged(amount=1))

    asyncio.run(go())
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["Charge process", "Charge process", "Charged process",
                                       "Charged process"]
    assert spans[0].attributes["messaging.message.conversation_id"] == "42"
    assert spans[0].status.status_code is not StatusCode.ERROR
    assert spans[1].status.status_code is StatusCode.ERROR
    assert spans[1].attributes["error.type"] == "handler_failed"
