"""10x overload sized for a broker run on a small machine: a bulkhead that takes ~200 msg/s
(10 slots x 50 ms) is offered 2,000 msg/s. Rejections must be counted (backpressure at once),
admitted messages keep P99 < 100 ms, nothing acknowledged is lost."""

from catga_bench import Bulkhead, CatgaUser, Scenario, SLOTargets, Stream, profiles
from catga_bench.profiles import HandlerSpec


class ChaosOverload(CatgaUser):
    scenario = Scenario(
        name="chaos_overload",
        description="10x overload of a 10-slot bulkhead with a 10-message queue",
        rate=2_000,
        qos=1,
        bulkhead=Bulkhead(max_concurrency=10, max_queue=10),
        streams=[Stream("IngestRow", handlers=[HandlerSpec("store", profiles.Io(50.0))])],
        slo=SLOTargets(p99_ms=100, max_lost=0, max_error_ratio=None, min_rejected=1),
    )
