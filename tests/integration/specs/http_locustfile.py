"""An HTTP service as a black box (tests/integration/test_http_target.py): 300 orders/s to the
service orders-http.yaml describes; the tests give --host, --rate and the SLO options."""

from pathlib import Path

from catga_bench import CatgaUser, Scenario, SLOTargets


class OrdersOverHttp(CatgaUser):
    scenario = Scenario(
        name="orders_http",
        description="an HTTP order service as a black box (AsyncAPI 3), 300 orders/s",
        rate=300,
        qos=1,
        streams=[],  # from the document
        sut="http",
        sut_spec=str(Path(__file__).parent / "orders-http.yaml"),
        slo=SLOTargets(p99_ms=250),
    )
