"""Failing handlers: one of five handlers has an outage from 4 s to 10 s into the run (run it
for 15 s or more). Its circuit breaker must open within 5 failures, fail fast while open (the
handler is not called), probe when half-open and close within 3 s of recovery; the other
handlers are unaffected (nothing lost, P99 < 100 ms)."""

from catga_bench import CatgaUser, Scenario, SLOTargets, Stream, profiles
from catga_bench.profiles import HandlerSpec
from core import BreakerConfig

handlers = [
    HandlerSpec("charge_card", profiles.Failing(outage_start_s=4.0, outage_end_s=10.0),
                breaker=BreakerConfig(failure_threshold=5, open_duration_s=1.0)),
    HandlerSpec("reserve_stock", profiles.Fast()),
    HandlerSpec("notify_customer", profiles.Io(latency_ms=2.0)),
    HandlerSpec("update_ledger", profiles.Fast()),
    HandlerSpec("emit_audit", profiles.Cpu(cost_us=20)),
]


class FailingHandlers(CatgaUser):
    scenario = Scenario(
        name="failing_handlers",
        description="payment handler outage 4-10 s; breaker 5 failures / 1 s open",
        rate=200,
        qos=1,
        streams=[Stream("PaymentRequested", handlers=handlers)],
        slo=SLOTargets(p99_ms=100, max_lost=0, max_error_ratio=None, breaker_opens_within=5,
                       breaker_closes_within_s=3.0, max_calls_while_open=0),
    )
