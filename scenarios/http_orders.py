"""HTTP, open model: 1,000 POST /orders per second to the Node.js order service
(examples/order-service-node), whatever it answers; a 2xx completes an order. Latency counts
from each request's intended send time, so a stalled endpoint shows in P99 (a closed-model
client would wait politely and hide it). --host overrides the document's server.
Run: locust -f scenarios/http_orders.py --headless -u 10 -r 10 -t 20s"""

from pathlib import Path

from catga_bench import CatgaUser, Scenario, SLOTargets

SPEC = Path(__file__).parent.parent / "examples" / "order-service-node" / "http.asyncapi.yaml"


class HttpOrders(CatgaUser):
    scenario = Scenario(
        name="http_orders",
        description="POST /orders on the Node order service (AsyncAPI 3 + http binding)",
        rate=1000,
        qos=0,
        streams=[],  # from the document: the HTTP operation, answered synchronously
        sut="http",
        sut_spec=str(SPEC),
        slo=SLOTargets(p99_ms=100, max_error_ratio=0.0),
    )
