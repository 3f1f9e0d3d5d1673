"""Overload: 10x more than the bulkhead can take (capacity ~500 msg/s: 10 slots x 20 ms
handlers; offered 5,000 msg/s). The limiter must reject the excess at once (backpressure,
counted), admitted messages keep P99 < 100 ms, and memory stays bounded (RSS growth < 100 MB)."""

from catga_bench import Bulkhead, CatgaUser, Scenario, SLOTargets, Stream, profiles
from catga_bench.profiles import HandlerSpec


class Overload(CatgaUser):
    scenario = Scenario(
        name="overload",
        description="10x overload of a 10-slot bulkhead with a 10-message queue",
        rate=5_000,
        qos=1,
        bulkhead=Bulkhead(max_concurrency=10, max_queue=10),
        streams=[Stream("ImportRow", handlers=[HandlerSpec("store", profiles.Io(20.0))])],
        slo=SLOTargets(p99_ms=100, max_lost=0, max_error_ratio=None, min_rejected=1,
                       max_rss_growth_mb=100),
    )
