"""The generator's ceiling over NATS: a black box that echoes each input unchanged (headers
too) from catga.echo.in to catga.echo.out (specs/nats_echo.py, started by its AsyncAPI
document, specs/nats-echo.asyncapi.yaml), at QoS 0 (core NATS).
`catga-bench capacity --ceiling-only nats` searches its capacity. Not listed by
`catga-bench scenarios` (its name starts with "_")."""

from pathlib import Path

from catga_bench import CatgaUser, Scenario, SLOTargets


class NoopNats(CatgaUser):
    scenario = Scenario(
        name="noop_nats",
        description="the generator's ceiling over NATS: an echo service, QoS 0",
        rate=10_000,  # capacity starts at rate / 8
        qos=0,
        streams=[],  # from the document
        sut="asyncapi",
        sut_spec=str(Path(__file__).parent / "specs" / "nats-echo.asyncapi.yaml"),
        slo=SLOTargets(p99_ms=100, max_error_ratio=0.0),
    )
