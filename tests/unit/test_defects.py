"""Seeded defects: the catalogue, its parsing, and what each defect does to the core object it
is given to (direct checks; the gate catching them: tests/chaos/test_gate_defects.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from catga_bench.errors import ConfigError
from catga_bench.targets import defects as catalogue
from catga_bench.targets.defects import DEFECTS, defects_from_env, parse_defects
from core import (
    BreakerConfig,
    CircuitState,
    ConcurrencyLimiter,
    ErrorCode,
    Event,
    HandlerOptions,
    Mediator,
    QoS,
    Request,
    Result,
    RetryPolicy,
)
from core.defects import new_endpoint, new_limiter, new_mediator
from core.transport.base import Delivery
from core.transport.envelope import TypeRegistry, encode

NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(slots=True)
class Paid(Event):
    n: int = 0


@dataclass(slots=True)
class Charge(Request):
    n: int = 0


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ----------------------------------------------------------------------------- catalogue
def test_catalogue_names_and_descriptions() -> None:
    assert set(DEFECTS) == {"block_loop", "breaker_disabled", "unbounded_queue", "dedup_off",
                            "ack_before_handling"}
    assert all(text and "\n" not in text for text in DEFECTS.values())
    assert all(name in catalogue.describe() for name in DEFECTS)


def test_parse_comma_list_ignores_blanks() -> None:
    assert parse_defects("") == frozenset()
    assert parse_defects(" , ") == frozenset()
    assert parse_defects("block_loop, dedup_off,") == {"block_loop", "dedup_off"}


def test_unknown_name_is_a_config_error_listing_the_allowed_names() -> None:
    with pytest.raises(ConfigError) as err:
        parse_defects("dedup_off,nope")
    assert isinstance(err.value, ValueError)
    msg = str(err.value)
    assert "CATGA_BENCH_DEFECTS" in msg and "'nope'" in msg
    assert all(name in msg for name in DEFECTS)


def test_from_env_and_harness_reexport(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    monkeypatch.delenv("CATGA_BENCH_DEFECTS", raising=False)
    assert defects_from_env() == frozenset()
    monkeypatch.setenv("CATGA_BENCH_DEFECTS", "unbounded_queue")
    assert defects_from_env() == {"unbounded_queue"}
    monkeypatch.setenv("CATGA_BENCH_DEFECTS", "bogus")
    with pytest.raises(ConfigError):
        defects_from_env()
    # serve.py imports it from the harness (not imported here: it would load locust/gevent)
    harness = Path(__file__).resolve().parents[2] / "catga_bench" / "harness" / "plugin.py"
    assert "from catga_bench.targets.defects import defects_from_env" in harness.read_text()


def test_core_modules_do_not_read_the_environment() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "core"
    for name in ("mediator.py", "limiter.py", "transport/endpoint.py"):
        assert "CATGA_BENCH_DEFECTS" not in (root / name).read_text()


# ----------------------------------------------------------------------------- unbounded_queue
async def _flood(limiter: ConcurrencyLimiter, n: int) -> list[bool]:
    """Hold the only slot, queue ``n`` callers, then release slot after slot."""
    assert limiter.try_acquire()
    tasks = [asyncio.ensure_future(limiter.acquire()) for _ in range(n)]
    await asyncio.sleep(0)
    for _ in range(n + 1):
        limiter.release()
        await asyncio.sleep(0)
    return list(await asyncio.gather(*tasks))


def test_unbounded_queue_never_rejects() -> None:
    clean = ConcurrencyLimiter(1, 5)
    run(_flood(clean, 100))
    assert clean.rejected == 95 and clean.peak_queue_depth == 5
    broken = new_limiter(1, 5, defects=frozenset({"unbounded_queue"}))
    assert all(run(_flood(broken, 100)))
    assert broken.rejected == 0 and broken.peak_queue_depth == 100


# ----------------------------------------------------------------------------- breaker_disabled
async def _hammer(m: Mediator, n: int) -> list[Result[Any]]:
    return [await m.send(Charge(n=i, qos=QoS.AT_MOST_ONCE)) for i in range(n)]


def _breaker_mediator(defects: frozenset[str]) -> tuple[Mediator, list[int]]:
    m = new_mediator(defects, retry=NO_RETRY)
    calls: list[int] = []

    async def charge(msg: Charge) -> Result[Any]:
        calls.append(msg.n)
        return Result.failure(ErrorCode.HANDLER_FAILED, "down", retryable=True)

    m.register(Charge, charge, name="charge", options=HandlerOptions(
        breaker=BreakerConfig(failure_threshold=3, open_duration_s=30)))
    return m, calls


def test_breaker_disabled_never_opens() -> None:
    m, calls = _breaker_mediator(frozenset())
    results = run(_hammer(m, 10))
    assert m.breakers["charge"].state is CircuitState.OPEN and len(calls) == 3
    assert results[-1].error is not None and results[-1].error.code is ErrorCode.CIRCUIT_OPEN

    m, calls = _breaker_mediator(frozenset({"breaker_disabled"}))
    results = run(_hammer(m, 10))
    b = m.breakers["charge"]
    assert b.state is CircuitState.CLOSED and b.opened == 0 and b.failures == 10
    assert len(calls) == 10  # every call reaches the failing handler
    assert {r.error.code for r in results if r.error} == {ErrorCode.HANDLER_FAILED}


# ----------------------------------------------------------------------------- dedup_off
async def _publish_twice(defects: frozenset[str]) -> list[int]:
    m = new_mediator(defects, retry=NO_RETRY)
    calls: list[int] = []

    async def book(msg: Paid) -> None:
        calls.append(msg.n)

    m.subscribe(Paid, book, name="book")
    msg = Paid(n=7, qos=QoS.EXACTLY_ONCE)
    first = await m.publish(msg)
    again = await m.publish(msg)  # same message id: a duplicate
    assert first.error is None and again.error is None
    return calls


def test_dedup_off_runs_a_qos2_duplicate_twice() -> None:
    assert run(_publish_twice(frozenset())) == [7]
    assert run(_publish_twice(frozenset({"dedup_off"}))) == [7, 7]


# ----------------------------------------------------------------------------- ack_before_handling
async def _publish_failing(defects: frozenset[str]) -> tuple[Result[Any], list[str], Mediator]:
    m = new_mediator(defects, retry=RetryPolicy(max_attempts=3, base_delay_s=0.001))
    log: list[str] = []

    async def flaky(msg: Paid) -> Result[Any]:
        await asyncio.sleep(0.001)
        log.append("handled")
        return Result.failure(ErrorCode.HANDLER_FAILED, "down", retryable=True)

    m.subscribe(Paid, flaky, name="flaky")
    result = await m.publish(Paid(qos=QoS.AT_LEAST_ONCE))
    log.append("acked")
    await m.drain()
    return result, log, m


def test_ack_before_handling_mediator_acks_first_and_drops_failures() -> None:
    result, log, m = run(_publish_failing(frozenset()))
    assert log == ["handled"] * 3 + ["acked"]  # retried, then reported
    assert result.value.failures and m.dead_letters.total == 1  # type: ignore[attr-defined]

    result, log, m = run(_publish_failing(frozenset({"ack_before_handling"})))
    assert log == ["acked", "handled"]  # acknowledged before the handler ran, never retried
    assert result.error is None and not result.value.failures
    assert m.retries == 0 and m.dead_letters.total == 0  # type: ignore[attr-defined]


class _RecordingDelivery(Delivery):
    __slots__ = ("log",)

    def __init__(self, headers: Any, body: bytes, log: list[str]) -> None:
        super().__init__("catga.test.Paid", headers, body)
        self.log = log

    async def ack(self) -> None:
        self.log.append("ack")

    async def nack(self, delay_s: float = 0.0, reason: str = "") -> None:
        self.log.append("nack")

    async def term(self, reason: str) -> None:
        self.log.append("term")


async def _endpoint_order(defects: frozenset[str] | None, mediator_defects: frozenset[str]
                          ) -> list[str]:
    m = new_mediator(mediator_defects)
    log: list[str] = []

    async def handler(msg: Paid) -> None:
        await asyncio.sleep(0.001)
        log.append("handled")

    m.subscribe(Paid, handler, name="h")
    registry = TypeRegistry([Paid])
    ep = new_endpoint(m, transport=None, registry=registry,  # type: ignore[arg-type]
                      defects=defects)
    headers, body = encode(Paid(qos=QoS.AT_LEAST_ONCE), registry)
    await ep._on_event(_RecordingDelivery(headers, body, log))
    await m.drain()
    return log


def test_ack_before_handling_endpoint_acks_before_the_handler_ran() -> None:
    assert run(_endpoint_order(frozenset(), frozenset())) == ["handled", "ack"]
    assert run(_endpoint_order(frozenset({"ack_before_handling"}), frozenset())) == [
        "ack", "handled"]
    # by default the endpoint takes the mediator's defects
    assert run(_endpoint_order(None, frozenset({"ack_before_handling"})))[0] == "ack"


def test_clean_objects_have_no_defect_hooks() -> None:
    m = Mediator()
    assert "publish" not in vars(m)  # the clean publish is the class's own method
    assert type(m.idempotency).__name__ != "_ForgetfulStore"
    assert ConcurrencyLimiter(2, 3).max_queue == 3


# ----------------------------------------------------------------------------- gate usage
def test_gate_help_lists_cases_profiles_and_defects(capsys: pytest.CaptureFixture[str]) -> None:
    from catga_bench.suite.cases import CASE_NAMES
    from catga_bench.suite.cli import main as gate_main
    assert gate_main(["--help"]) == 0
    out = capsys.readouterr().out
    for word in (*CASE_NAMES, *DEFECTS, "--profile", "--transports", "--only",
                 "--json", "--report-dir", "exit codes"):
        assert word in out


@pytest.mark.parametrize(("argv", "env", "needle"), [
    (["--only", "nope"], "", "--only: unknown 'nope'"),
    (["--transports", "kafka"], "", "--transports: unknown 'kafka'"),
    (["--only", "core_killed"], "", "add --transports nats"),
    (["--profile", "fast"], "", "--profile"),
    (["--only", "high_fanout"], "nope", "unknown defect 'nope'"),
])
def test_gate_usage_errors_exit_2(argv: list[str], env: str, needle: str,
                                  monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from catga_bench.suite.cli import main as gate_main
    monkeypatch.setenv("CATGA_BENCH_DEFECTS", env)
    assert gate_main(argv) == 2
    assert needle in capsys.readouterr().err


def test_gate_plan_runs_remote_cases_only_over_brokers() -> None:
    from catga_bench.suite.cases import CASE_NAMES, CASES
    from catga_bench.suite.plan import plan
    runs = plan(None, ["embedded"])
    assert [c.name for c, _ in runs] == [n for n in CASE_NAMES if n != "core_killed"]
    remote = plan(None, ["embedded", "nats"])
    assert ("core_killed", "nats") in [(c.name, t) for c, t in remote]
    assert all(c.seconds["ci"] <= 16 for c in CASES)
    assert next(c for c in CASES if c.name == "failing_handlers").seconds["ci"] >= 15
