"""The reference core as a black box: 10,500 msg/s offered (5% over the 10K target) at QoS 0 to
`catga-bench serve --asyncapi` (one fast handler), seen only through its AsyncAPI document.
Targets: achieved >= 10,000 msg/s, P99 < 100 ms (from the intended send time to the output seen).
Run: catga-bench serve --transport nats --asyncapi scenarios/specs/catga-core.asyncapi.yaml
       --scenario scenarios/core_black_box.py &
     locust -f scenarios/core_black_box.py --headless -u 10 -r 10 -t 30s"""

from pathlib import Path

from catga_bench import CatgaUser, Scenario, SLOTargets, Stream, profiles


class CoreBlackBox(CatgaUser):
    scenario = Scenario(
        name="core_black_box",
        description="the served core as a black box (AsyncAPI), 10.5K msg/s, QoS 0",
        rate=10_500,
        qos=0,
        # what the served core runs; the harness sees only the document
        streams=[Stream("Input", handlers=[profiles.HandlerSpec("apply", profiles.Fast())])],
        sut="asyncapi",
        sut_spec=str(Path(__file__).parent / "specs" / "catga-core.asyncapi.yaml"),
        slo=SLOTargets(p99_ms=100, min_throughput=10_000, max_error_ratio=0.0),
    )
