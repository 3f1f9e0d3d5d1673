"""A service in another language as a black box: 1,000 orders/s at QoS 1 to the Node.js order
service (examples/order-service-node), described by its AsyncAPI 3 document, which also tells
catga-bench how to start it. Every order must be confirmed, in shape, within 100 ms at P99;
duplicates beyond at-least-once's redeliveries (0.1%) fail.
Run: locust -f scenarios/black_box_orders.py --headless -u 10 -r 10 -t 20s [--nats-url URL]"""

from pathlib import Path

from catga_bench import CatgaUser, Scenario, SLOTargets

SPEC = Path(__file__).parent.parent / "examples" / "order-service-node" / "asyncapi.yaml"


class BlackBoxOrders(CatgaUser):
    scenario = Scenario(
        name="black_box_orders",
        description="the Node order service over NATS JetStream (AsyncAPI 3), 1,000 orders/s",
        rate=1000,
        qos=1,
        streams=[],  # from the document: its input and output operations
        sut="asyncapi",
        sut_spec=str(SPEC),
        slo=SLOTargets(p99_ms=100, max_lost=0, max_duplicate_ratio=0.001),
    )
