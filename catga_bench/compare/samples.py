"""Run samples: the figures of one run report (report.json) that a comparison uses.

:func:`load_runs` reads every ``report.json`` under a folder (recursively); comparison reports
(``"kind": "comparison"``) are skipped, so a comparison written beside its runs is not a run.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from catga_bench.errors import ConfigError

COMPARISON_KIND = "comparison"


@dataclass(frozen=True, slots=True)
class RunSample:
    """One run: ``p*_ms`` in milliseconds (latency from the intended send time), rates in
    msg/s, ``error_ratio`` 0..1, ``lost``/``duplicates`` in messages; ``path`` its report."""

    path: str
    scenario: str
    transport: str
    sut: str
    p99_ms: float | None
    p50_ms: float | None
    p999_ms: float | None
    achieved_rate: float | None
    offered_rate: float | None
    error_ratio: float
    lost: int
    duplicates: int
    exit_code: int | None

    def value(self, metric: str) -> float | None:
        """The run's value of ``metric`` (a name of :data:`catga_bench.compare.metrics.METRICS`)."""
        v = getattr(self, metric)
        return None if v is None else float(v)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def sample_from_report(report: dict[str, Any], path: str) -> RunSample:
    """The sample of one report dict (missing figures: ``None`` for latency and rates, 0 for
    counts and the error ratio)."""
    latency = report.get("latency_ms") if isinstance(report.get("latency_ms"), dict) else {}
    sut = report.get("sut")
    sut_kind = sut.get("kind") if isinstance(sut, dict) else sut
    code = report.get("exit_code")
    return RunSample(
        path=path,
        scenario=str(report.get("scenario") or "?"),
        transport=str(report.get("transport") or "?"),
        sut=str(sut_kind or "?"),
        p99_ms=_number(latency.get("p99")),
        p50_ms=_number(latency.get("p50")),
        p999_ms=_number(latency.get("p999")),
        achieved_rate=_number(report.get("achieved_rate")),
        offered_rate=_number(report.get("offered_rate")),
        error_ratio=_number(report.get("error_ratio")) or 0.0,
        lost=int(_number(report.get("lost")) or 0),
        duplicates=int(_number(report.get("duplicates")) or 0),
        exit_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
    )


def load_run(path: Path) -> RunSample | None:
    """The sample of one report.json; ``None`` for a comparison report.

    Raises:
        ConfigError: the file is not a JSON object.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable JSON report ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a run report (a JSON object expected)")
    if data.get("kind") == COMPARISON_KIND:
        return None
    return sample_from_report(data, str(path))


def load_runs(folder: Path, side: str = "runs") -> list[RunSample]:
    """Every run report (``report.json``) under ``folder``, recursively, in path order.

    Args:
        folder: the folder of one side (a release's runs).
        side: the name used in error messages (``baseline``, ``candidate``).

    Raises:
        ConfigError: the folder does not exist, holds no run report, or its reports come from
            different scenarios or transports (one line each, naming the folder).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{side}: no such folder: {folder}")
    runs = [s for p in sorted(folder.rglob("report.json")) if (s := load_run(p)) is not None]
    if not runs:
        raise ConfigError(f"{side}: no run reports (report.json) under {folder}")
    check_one_setup(runs, side)
    return runs


def check_one_setup(runs: list[RunSample], side: str) -> None:
    """All runs come from one scenario over one transport.

    Raises:
        ConfigError: they do not (the message names two that differ).
    """
    for field in ("scenario", "transport"):
        values = sorted({getattr(r, field) for r in runs})
        if len(values) > 1:
            raise ConfigError(f"{side}: runs from different {field}s ({', '.join(values)}); "
                              f"compare one {field} at a time")
