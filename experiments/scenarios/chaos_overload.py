"""10x overload sized for a broker run on a small machine, at every QoS level side by side: a
bulkhead that takes ~100 msg/s (one slot, 10 ms handlers, a 1-message queue) shared by
three streams at QoS 0, 1 and 2 is offered 1,000 msg/s (sized so the generator, the broker and
the core fit on two cores: the ratio is the point, not the rate). Rejections must be counted
(backpressure at once, reported to the sender), admitted messages keep P99 < 100 ms, the core's
memory stays flat and nothing acknowledged is lost."""

from catga_bench import Bulkhead, CatgaUser, Scenario, SLOTargets, Stream, profiles
from catga_bench.profiles import HandlerSpec


class ChaosOverload(CatgaUser):
    scenario = Scenario(
        name="chaos_overload",
        description="10x overload of a 1-slot bulkhead with a 1-message queue, QoS 0/1/2",
        rate=1_000,
        bulkhead=Bulkhead(max_concurrency=1, max_queue=1),
        streams=[Stream(f"IngestRowQos{q}", handlers=[HandlerSpec("store", profiles.Io(10.0))],
                        qos=q) for q in (0, 1, 2)],
        slo=SLOTargets(p99_ms=100, max_lost=0, max_duplicates=0, max_error_ratio=None,
                       min_rejected=1, max_rss_growth_mb=100),
    )
