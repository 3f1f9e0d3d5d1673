"""Read scenario files as data: the :class:`~catga_bench.workload.scenario.Scenario` objects
they declare, without Locust.

A scenario file is a locustfile (``class X(CatgaUser): scenario = Scenario(...)``). The served
core (``catga-bench serve``) needs only the scenarios, and must not import Locust (gevent's
monkey-patching has no place in an asyncio core). While :func:`load_scenarios` executes the
files, ``catga_bench.CatgaUser`` resolves to :class:`ScenarioHolder`, a plain class, so the
same files load in either process unchanged.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from catga_bench.workload.scenario import Scenario

_reading = threading.local()


class ScenarioHolder:
    """What ``CatgaUser`` is while a scenario file is read as data: a class with a
    ``scenario`` attribute and nothing else."""

    abstract: ClassVar[bool] = True
    scenario: ClassVar[Scenario]


def reading_as_data() -> bool:
    """True while :func:`load_scenarios` executes a scenario file on this thread."""
    return bool(getattr(_reading, "depth", 0))


@contextmanager
def _as_data() -> Iterator[None]:
    _reading.depth = getattr(_reading, "depth", 0) + 1
    try:
        yield
    finally:
        _reading.depth -= 1


def scenario_files(paths: list[Path]) -> list[Path]:
    """The files among ``paths``; a directory gives its ``*.py`` not starting with ``_``."""
    files: list[Path] = []
    for p in paths:
        files += sorted(q for q in p.glob("*.py") if not q.name.startswith("_")) \
            if p.is_dir() else [p]
    return files


def load_scenarios(paths: list[Path]) -> dict[str, Scenario]:
    """Scenarios declared in the given files (directories are searched for ``*.py``), by name.

    Raises:
        ValueError: a file given by name declares no scenario, or is not a Python file.
        OSError, SyntaxError: a file cannot be read or parsed.
    """
    out: dict[str, Scenario] = {}
    dirs = {p for p in paths if p.is_dir()}
    for f in scenario_files(paths):
        spec = importlib.util.spec_from_file_location(f"catga_scenario_{f.stem}", f)
        if spec is None or spec.loader is None:
            raise ValueError(f"{f}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        with _as_data():
            spec.loader.exec_module(module)
        found = [v.scenario for v in vars(module).values()
                 if isinstance(v, type) and isinstance(getattr(v, "scenario", None), Scenario)]
        if not found and f.parent not in dirs:
            raise ValueError(f"{f}: declares no CatgaUser with a scenario")
        for s in found:
            out[s.name] = s
    return out


__all__ = ["ScenarioHolder", "load_scenarios", "reading_as_data", "scenario_files"]
