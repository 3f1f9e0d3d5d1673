"""Exactly once: QoS 2 with 5% of messages sent twice under the same message id (a producer's
retry, a broker's redelivery). Deduplication must run each handler once per message id:
duplicates handled = 0, nothing lost, P99 < 100 ms."""

from catga_bench import CatgaUser, Scenario, SLOTargets, Stream, profiles
from catga_bench.profiles import HandlerSpec

handlers = [
    HandlerSpec("debit_account", profiles.Fast()),
    HandlerSpec("credit_account", profiles.Fast()),
    HandlerSpec("write_journal", profiles.Io(latency_ms=1.0)),
    HandlerSpec("notify", profiles.Cpu(cost_us=20)),
]


class ExactlyOnce(CatgaUser):
    scenario = Scenario(
        name="exactly_once",
        description="QoS 2, 4 handlers, 5% of messages re-sent with the same id",
        rate=500,
        qos=2,
        duplicate_ratio=0.05,
        streams=[Stream("TransferBooked", handlers=handlers)],
        slo=SLOTargets(p99_ms=100, max_lost=0, max_duplicates=0, max_error_ratio=0.0),
    )
