"""High fan-out: one event type with 120 handlers of mixed cost (--handlers to change);
every handler runs for every event. Targets: P99 < 100 ms, nothing lost."""

from catga_bench import CatgaUser, Scenario, SLOTargets, Stream, profiles


class HighFanout(CatgaUser):
    scenario = Scenario(
        name="high_fanout",
        description="one event, 120 handlers (80% fast, 10% cpu 20us, 10% io 2ms)",
        rate=200,
        qos=1,
        streams=[Stream("OrderPlaced", handlers=profiles.mixed, count=120)],
        slo=SLOTargets(p99_ms=100, max_lost=0, max_error_ratio=0.0),
    )
