"""Every QoS level side by side, for the chaos matrix: three event streams — at-most-once,
at-least-once, exactly-once — each with the same 10 handlers of mixed cost, 100 msg/s each.
One run under a fault answers per level: QoS 0 loss (reported, allowed), QoS 1 and 2 lost
(must be 0), QoS 2 duplicates handled (must be 0) — ``lost_by_qos`` / ``duplicates_by_qos`` and
the per-stream rows of the report."""

from catga_bench import CatgaUser, Scenario, SLOTargets, Stream, profiles


class ChaosMixed(CatgaUser):
    scenario = Scenario(
        name="chaos_mixed",
        description="three streams at QoS 0, 1 and 2, 10 handlers each",
        rate=300,
        streams=[Stream(f"OrderQos{q}", handlers=profiles.mixed, count=10, qos=q)
                 for q in (0, 1, 2)],
        slo=SLOTargets(p99_ms=None, max_error_ratio=None, max_lost=0, max_duplicates=0),
    )
