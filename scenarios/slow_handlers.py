"""Slow handlers: 10% of messages go to a handler that takes 5 s under a 1 s timeout, in their
own bulkhead. Fast messages keep P99 < 100 ms, timeouts are counted, the loop never stalls."""

from catga_bench import Bulkhead, CatgaUser, Scenario, SLOTargets, Stream, profiles
from catga_bench.profiles import HandlerSpec

slow_report = [
    HandlerSpec("render_pdf", profiles.Slow(seconds=5.0), timeout_s=1.0),
    HandlerSpec("audit", profiles.Fast()),
]


class SlowHandlers(CatgaUser):
    scenario = Scenario(
        name="slow_handlers",
        description="fast events (90%) beside 5 s handlers cut at 1 s (10%, own bulkhead)",
        rate=500,
        qos=1,
        streams=[
            Stream("OrderPlaced", share=0.9, handlers=profiles.mixed, count=10),
            Stream("ReportRequested", share=0.1, slo=False, handlers=slow_report,
                   bulkhead=Bulkhead(max_concurrency=500, max_queue=1_000)),
        ],
        slo=SLOTargets(p99_ms=100, max_lost=0, max_error_ratio=0.0, min_timeouts=1,
                       max_loop_lag_p99_ms=50),
    )
