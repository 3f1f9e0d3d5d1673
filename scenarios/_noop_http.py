"""The generator's ceiling over HTTP: POST /orders to the Node.js example service
(examples/order-service-node, `npm ci` there once), which answers at once.
`catga-bench capacity --ceiling-only http` searches its capacity. Not listed by
`catga-bench scenarios` (its name starts with "_")."""

from pathlib import Path

from catga_bench import CatgaUser, Scenario, SLOTargets

SPEC = Path(__file__).parent.parent / "examples" / "order-service-node" / "http.asyncapi.yaml"


class NoopHttp(CatgaUser):
    scenario = Scenario(
        name="noop_http",
        description="the generator's ceiling over HTTP: the Node example service",
        rate=10_000,  # capacity starts at rate / 8
        qos=0,
        streams=[],  # from the document
        sut="http",
        sut_spec=str(SPEC),
        slo=SLOTargets(p99_ms=100, max_error_ratio=0.0),
    )
