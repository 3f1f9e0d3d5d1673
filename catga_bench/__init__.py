"""catga-bench: load, observability and chaos testing for the Catga design.

Scenario files import what they need from here::

    from catga_bench import CatgaUser, Scenario, Stream, SLOTargets, profiles
"""

from catga_bench import profiles
from catga_bench._version import __version__
from catga_bench.workload.scenario import Bulkhead, Scenario, Stream
from catga_bench.workload.slo import SLOTargets

__all__ = ["Bulkhead", "CatgaUser", "SLOTargets", "Scenario", "Stream", "__version__", "profiles"]


def __getattr__(name: str) -> object:
    # CatgaUser pulls in Locust (and gevent's monkey-patching): import it only when asked for.
    if name == "CatgaUser":
        from catga_bench.workload.loader import ScenarioHolder, reading_as_data

        if reading_as_data():  # catga-bench serve reads scenario files without Locust
            return ScenarioHolder
        from catga_bench.harness.user import CatgaUser

        return CatgaUser
    raise AttributeError(name)
