"""The seeded changes of compare --self-test (catga_bench.workload.seeds): the Io/Cpu handlers'
service time times CATGA_BENCH_SLOWDOWN, a share CATGA_BENCH_FAIL_RATIO of their calls failed,
nothing changed when unset, bad values a ConfigError."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from catga_bench.errors import ConfigError
from catga_bench.workload import seeds
from catga_bench.workload.profiles import Cpu, Io
from core import Result


class _Ctx:
    def __init__(self) -> None:
        self.ok: list[int] = []
        self.bad: list[int] = []

    def handled(self, stream: int, handler: int, seq: int) -> None:
        self.ok.append(seq)

    def failed(self, stream: int, handler: int, seq: int) -> None:
        self.bad.append(seq)


def _time_calls(handler, n: int) -> float:  # type: ignore[no-untyped-def]
    async def go() -> float:
        start = time.perf_counter()
        for i in range(n):
            await handler(SimpleNamespace(seq=i))
        return time.perf_counter() - start
    return asyncio.run(go())


def test_unset_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(seeds.SLOWDOWN_VAR, raising=False)
    monkeypatch.delenv(seeds.FAIL_RATIO_VAR, raising=False)
    assert seeds.slowdown_factor() == 1.0 and seeds.fail_every() == 0
    ctx = _Ctx()
    handler = Io(latency_ms=1.0).build(ctx, 0, 0)  # type: ignore[arg-type]
    assert handler.__name__ == "io"  # the plain handler: no wrapper, no cost per message


def test_slowdown_multiplies_io_and_cpu_service_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(seeds.SLOWDOWN_VAR, "3")
    assert _time_calls(Io(latency_ms=10.0).build(_Ctx(), 0, 0), 5) >= 5 * 0.030  # type: ignore[arg-type]
    assert _time_calls(Cpu(cost_us=5000).build(_Ctx(), 0, 0), 5) >= 5 * 0.015  # type: ignore[arg-type]


def test_fail_ratio_fails_that_share_of_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(seeds.FAIL_RATIO_VAR, "0.25")
    ctx = _Ctx()
    handler = Io(latency_ms=0.0).build(ctx, 0, 0)  # type: ignore[arg-type]

    async def go() -> list[object]:
        return [await handler(SimpleNamespace(seq=i)) for i in range(8)]

    results = asyncio.run(go())
    failures = [r for r in results if isinstance(r, Result) and r.error is not None]
    assert len(failures) == 2 and ctx.bad == [3, 7] and len(ctx.ok) == 6
    assert all(not f.error.retryable for f in failures)  # type: ignore[union-attr]


@pytest.mark.parametrize(("var", "value", "match"), [
    (seeds.SLOWDOWN_VAR, "fast", "expected a number"),
    (seeds.SLOWDOWN_VAR, "0", "factor > 0"),
    (seeds.FAIL_RATIO_VAR, "1.5", r"\[0, 1\]"),
])
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str,
                                      match: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=var):
        seeds.slowdown_factor() if var == seeds.SLOWDOWN_VAR else seeds.fail_every()
    with pytest.raises(ConfigError, match=match):
        seeds.slowdown_factor() if var == seeds.SLOWDOWN_VAR else seeds.fail_every()
