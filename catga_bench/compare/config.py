"""A comparison's settings: which metrics, the margin, the significance level and the absolute
limits; from options or a TOML/YAML file (``--config FILE``)::

    metrics = ["p99_ms", "achieved_rate", "error_ratio", "lost"]
    margin = 0.03          # a relative metric may be worse by up to 3% (noise allowance)
    alpha = 0.05           # one-sided significance level of both tests
    [limits]               # absolute metrics; default: the worst baseline run
    error_ratio = 0.001
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from catga_bench.compare.metrics import DEFAULT_METRICS, METRICS
from catga_bench.errors import ConfigError

CONFIG_KEYS = ("metrics", "margin", "alpha", "limits")


@dataclass(frozen=True)
class CompareConfig:
    """``margin`` in (0, 1) (0.03: 3% worse allowed), ``alpha`` in (0, 0.5); ``limits``: metric
    -> highest allowed value of an absolute metric (missing: the worst baseline run's);
    ``seed`` makes the bootstrap interval reproducible."""

    metrics: tuple[str, ...] = DEFAULT_METRICS
    margin: float = 0.03
    alpha: float = 0.05
    limits: dict[str, float] = field(default_factory=dict)
    seed: int = 12345

    def __post_init__(self) -> None:
        check_metrics(self.metrics, "metrics")
        if not self.metrics:
            raise ConfigError(f"metrics: empty; allowed: {', '.join(METRICS)}")
        if not (isinstance(self.margin, int | float) and 0 < self.margin < 1):
            raise ConfigError(f"margin: must be in (0, 1) (0.03 = 3%), got {self.margin}")
        if not (isinstance(self.alpha, int | float) and 0 < self.alpha < 0.5):
            raise ConfigError(f"alpha: must be in (0, 0.5), got {self.alpha}")
        absolute = [n for n, m in METRICS.items() if m.kind == "absolute"]
        for name, limit in self.limits.items():
            if name not in absolute:
                raise ConfigError(f"limits: unknown absolute metric {name!r}; allowed: "
                                  f"{', '.join(absolute)}")
            if isinstance(limit, bool) or not isinstance(limit, int | float) \
                    or not math.isfinite(limit) or limit < 0:
                raise ConfigError(f"limits.{name}: must be a number >= 0, got {limit!r}")


def check_metrics(names: tuple[str, ...] | list[str], where: str) -> None:
    """Raises ConfigError naming the first unknown metric and the allowed ones."""
    for name in names:
        if name not in METRICS:
            raise ConfigError(f"{where}: unknown metric {name!r}; allowed: {', '.join(METRICS)}")


def parse_metrics(text: str) -> tuple[str, ...]:
    """``p99_ms,achieved_rate`` -> a tuple (blanks dropped).

    Raises:
        ConfigError: an unknown name (``--metrics``).
    """
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    check_metrics(names, "--metrics")
    return names


def load_config(path: Path, base: CompareConfig | None = None) -> CompareConfig:
    """The settings of a TOML (``.toml``) or YAML file over ``base`` (default settings).

    Raises:
        ConfigError: unreadable file, unknown key (listing the allowed ones), unknown metric,
            a value out of range.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
        data: Any = tomllib.loads(text) if str(path).endswith(".toml") else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"--config: cannot read {path}: {one_line(exc)}") from None
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path}: expected a table of {', '.join(CONFIG_KEYS)}")
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"--config: unknown key {unknown[0]!r}; allowed: "
                          f"{', '.join(CONFIG_KEYS)}")
    cfg = base or CompareConfig()
    changes: dict[str, Any] = {}
    if "metrics" in data:
        metrics = data["metrics"]
        if isinstance(metrics, str):
            metrics = [m.strip() for m in metrics.split(",") if m.strip()]
        if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
            raise ConfigError("metrics: expected a list of metric names; allowed: "
                              f"{', '.join(METRICS)}")
        changes["metrics"] = tuple(metrics)
    for key in ("margin", "alpha"):
        if key in data:
            changes[key] = data[key]
    if "limits" in data:
        if not isinstance(data["limits"], dict):
            raise ConfigError("limits: expected a table of metric = limit")
        changes["limits"] = dict(data["limits"])
    return replace(cfg, **changes)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
