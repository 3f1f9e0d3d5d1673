"""A service in a black box: 300 orders/s at QoS 1 to the order service described by
asyncapi.yaml (start it first: python service.py). Every order must be confirmed once, in the
right shape, within 100 ms at P99.
Run: locust -f locustfile.py --headless -u 5 -r 5 -t 20s [--nats-url URL]"""

from pathlib import Path

from catga_bench import CatgaUser, Scenario, SLOTargets


class OrderService(CatgaUser):
    scenario = Scenario(
        name="order_service",
        description="a NATS order service as a black box (AsyncAPI 3), 300 orders/s, QoS 1",
        rate=300,
        qos=1,
        streams=[],  # from the document: its input and output operations
        sut="asyncapi",
        sut_spec=str(Path(__file__).parent / "asyncapi.yaml"),
        slo=SLOTargets(p99_ms=100),
    )
