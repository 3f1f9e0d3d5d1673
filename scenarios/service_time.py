"""Service time: 500 requests/s, each answered by one handler that waits 20 ms (an I/O call), so
P99 follows the handler's service time. Made for regression detection (catga-bench compare):
a slower handler path shows in P99. Targets: P99 < 100 ms, no errors, nothing lost."""

from catga_bench import CatgaUser, Scenario, SLOTargets, Stream, profiles
from catga_bench.profiles import HandlerSpec


class ServiceTime(CatgaUser):
    scenario = Scenario(
        name="service_time",
        description="500 req/s, QoS 1, one 20 ms I/O handler",
        rate=500,
        qos=1,
        streams=[Stream("GetQuote", kind="request",
                        handlers=[HandlerSpec("quote", profiles.Io(latency_ms=20.0))])],
        slo=SLOTargets(p99_ms=100, max_lost=0, max_error_ratio=0.0),
    )
