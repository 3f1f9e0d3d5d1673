"""Seeded handler changes for ``catga-bench compare --self-test``: a slowdown and an error
ratio that a comparison must catch.

Both are chosen ONLY by environment variables (as the core defects of
:mod:`catga_bench.targets.defects`), so they reach the Locust subprocess of a compared run
without an option a user could set by mistake. This module is the only place that reads them.
They are read once, when a handler is built (:mod:`catga_bench.workload.profiles`), so an unset
variable costs nothing per message:

- ``CATGA_BENCH_SLOWDOWN`` (a factor > 0, e.g. ``1.10``): the service time of the ``Io`` and
  ``Cpu`` handler profiles is multiplied by it (the "+10% handler path" of issue 13).
- ``CATGA_BENCH_FAIL_RATIO`` (0..1, e.g. ``0.01``): that share of the ``Io`` and ``Cpu``
  handlers' calls fail (deterministically, every 1/ratio-th call) with a non-retryable
  ``HANDLER_FAILED`` result, so the run's ``error_ratio`` rises from 0.
"""

from __future__ import annotations

import os

from catga_bench.errors import ConfigError

SLOWDOWN_VAR = "CATGA_BENCH_SLOWDOWN"
FAIL_RATIO_VAR = "CATGA_BENCH_FAIL_RATIO"


def _number(name: str) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from None


def slowdown_factor() -> float:
    """The service-time factor of ``CATGA_BENCH_SLOWDOWN`` (1.0 when unset).

    Raises:
        ConfigError: not a number, or not > 0 (allowed: a factor > 0, e.g. 1.10).
    """
    value = _number(SLOWDOWN_VAR)
    if value is None:
        return 1.0
    if not value > 0:
        raise ConfigError(f"{SLOWDOWN_VAR}: must be a factor > 0 (e.g. 1.10), got {value}")
    return value


def fail_every() -> int:
    """Every how many handler calls one fails, from ``CATGA_BENCH_FAIL_RATIO`` (0: never).

    Raises:
        ConfigError: not a number, or outside [0, 1].
    """
    value = _number(FAIL_RATIO_VAR)
    if value is None or value == 0:
        return 0
    if not 0 < value <= 1:
        raise ConfigError(f"{FAIL_RATIO_VAR}: must be in [0, 1] (e.g. 0.01), got {value}")
    return max(1, round(1 / value))


__all__ = ["FAIL_RATIO_VAR", "SLOWDOWN_VAR", "fail_every", "slowdown_factor"]
