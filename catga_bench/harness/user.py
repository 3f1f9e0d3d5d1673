"""``CatgaUser``: the Locust user class that scenario files subclass.

A scenario file declares its workload and targets and nothing else::

    class HighFanout(CatgaUser):
        scenario = Scenario(name="high_fanout", rate=200, streams=[...], slo=SLOTargets(...))

Each spawned user is one *producer* owning ``rate / users`` of the offered load; the messages
themselves are generated on the core's asyncio loop on an open schedule (greenlets cross the
bridge once per tick, never per message). The user's task wakes every ``tick_s`` to feed
completions into Locust's statistics for the web UI.
"""

from __future__ import annotations

from typing import Any, ClassVar

from locust import User, constant, task
from locust.env import Environment

from catga_bench.harness import plugin as _harness
from catga_bench.workload.scenario import Scenario


class CatgaUser(User):
    """Base class for catga-bench scenarios (abstract: subclass it and set ``scenario``)."""

    abstract = True
    scenario: ClassVar[Scenario]
    tick_s: ClassVar[float] = 0.25
    wait_time = constant(0)

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self._producer: int | None = None

    @property
    def harness(self) -> _harness.Harness:
        return environment_harness(self.environment)

    def on_start(self) -> None:
        self._producer = self.harness.add_producer()

    def on_stop(self) -> None:
        if self._producer is not None:
            self.harness.remove_producer(self._producer)
            self._producer = None

    @task
    def pump(self) -> None:
        """Feed Locust's statistics with the completions since the last tick."""
        self.harness.pump_completions()
        self._sleep()

    def _sleep(self) -> None:
        import gevent

        gevent.sleep(self.tick_s)


def environment_harness(environment: Environment) -> _harness.Harness:
    h = getattr(environment, "catga", None)
    if h is None:
        raise RuntimeError("catga-bench is not initialised in this Locust process")
    return h  # type: ignore[no-any-return]


def _find_scenario(environment: Environment) -> tuple[Scenario, str] | None:
    classes: list[Any] = [
        c for c in (environment.user_classes or [])
        if isinstance(c, type) and issubclass(c, CatgaUser) and getattr(c, "scenario", None)
    ]
    if not classes:
        return None
    cls = classes[0]
    scenario: Scenario = cls.scenario
    return scenario, scenario.name or cls.__name__


_harness.install(_find_scenario)
