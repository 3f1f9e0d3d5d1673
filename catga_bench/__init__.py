"""catga-bench: load, observability and chaos testing for the Catga design.

Scenario files import what they need from here::

    from catga_bench import CatgaUser, Scenario, Stream, SLOTargets, profiles
"""

from catga_bench import profiles
from catga_bench.workload.scenario import Bulkhead, Scenario, Stream
from catga_bench.workload.slo import SLOTargets

__all__ = ["Bulkhead", "CatgaUser", "SLOTargets", "Scenario", "Stream", "profiles"]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # CatgaUser pulls in Locust (and gevent's monkey-patching): import it only when asked for.
    if name == "CatgaUser":
        from catga_bench.harness.user import CatgaUser

        return CatgaUser
    raise AttributeError(name)
