"""A service in a black box over Redis Streams: 300 orders/s at QoS 1 to the order service
described by asyncapi.yaml. Every order must be confirmed once, in the right shape, within
100 ms at P99. The document's x-catga-bench.process starts the service (python3 service.py,
REDIS_URL set to the run's Redis server) before the load and stops it after the drain; its
output goes to sut-order-service-redis.log in the report folder. Only Redis must be running.
Run: locust -f locustfile.py --headless -u 5 -r 5 -t 20s [--redis-url URL]
(ORDER_SERVICE_DEFECT=drop_1pct|dup_1pct|bad_schema_1pct in the environment seeds a defect.)"""

from pathlib import Path

from catga_bench import CatgaUser, Scenario, SLOTargets


class OrderServiceRedis(CatgaUser):
    scenario = Scenario(
        name="order_service_redis",
        description="a Redis Streams order service as a black box (AsyncAPI 3), 300 orders/s, "
                    "QoS 1",
        rate=300,
        qos=1,
        streams=[],  # from the document: its input and output operations
        sut="asyncapi",
        sut_spec=str(Path(__file__).parent / "asyncapi.yaml"),
        slo=SLOTargets(p99_ms=100),
    )
