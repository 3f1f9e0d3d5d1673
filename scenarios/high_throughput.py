"""High throughput: 10,500 msg/s offered (5% over the 10K target) at QoS 0 to one fast handler.
Targets: achieved >= 10,000 msg/s, P99 < 100 ms."""

from catga_bench import CatgaUser, Scenario, SLOTargets, Stream, profiles


class HighThroughput(CatgaUser):
    scenario = Scenario(
        name="high_throughput",
        description="10.5K msg/s offered, QoS 0, one fast handler",
        rate=10_500,
        qos=0,
        streams=[Stream("PriceTick", handlers=[profiles.HandlerSpec("apply", profiles.Fast())])],
        slo=SLOTargets(p99_ms=100, min_throughput=10_000, max_error_ratio=0.0),
    )
