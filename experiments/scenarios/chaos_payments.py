"""Payments for the handler-outage experiment, at every QoS level side by side: like
failing_handlers, but every handler is healthy until an experiment injects a runtime fault
(``handler_fault``) into charge_card, whose circuit breaker (one per stream) opens after 5
failures and probes again after 1 s."""

from catga_bench import CatgaUser, Scenario, SLOTargets, Stream, profiles
from catga_bench.profiles import HandlerSpec
from core import BreakerConfig

handlers = [
    HandlerSpec("charge_card", profiles.Io(latency_ms=1.0),
                breaker=BreakerConfig(failure_threshold=5, open_duration_s=1.0)),
    HandlerSpec("reserve_stock", profiles.Fast()),
    HandlerSpec("notify_customer", profiles.Io(latency_ms=2.0)),
    HandlerSpec("update_ledger", profiles.Fast()),
]


class ChaosPayments(CatgaUser):
    scenario = Scenario(
        name="chaos_payments",
        description="four payment handlers, charge_card behind a breaker (5 failures, 1 s), "
                    "at QoS 0, 1 and 2",
        rate=300,
        streams=[Stream(f"PaymentQos{q}", handlers=handlers, qos=q) for q in (0, 1, 2)],
        slo=SLOTargets(p99_ms=100, max_lost=0, max_duplicates=0, max_error_ratio=None),
    )
