"""The generator's ceiling, embedded: the reference core with one handler that does nothing
(profiles.Fast, the cheapest handler), at QoS 0. `catga-bench capacity --ceiling-only embedded`
searches its capacity: what the generator and the embedded core can measure at all on this
machine. Not listed by `catga-bench scenarios` (its name starts with "_")."""

from catga_bench import CatgaUser, Scenario, SLOTargets, Stream, profiles


class Noop(CatgaUser):
    scenario = Scenario(
        name="noop",
        description="the generator's ceiling: embedded core, one no-op handler, QoS 0",
        rate=10_000,  # capacity starts at rate / 8
        qos=0,
        streams=[Stream("Noop", handlers=[profiles.HandlerSpec("noop", profiles.Fast())])],
        slo=SLOTargets(p99_ms=100, max_error_ratio=0.0),
    )
