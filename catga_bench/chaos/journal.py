"""The run's journal: JSON with Chaos Toolkit's journal field names (``experiment``,
``status``, ``start``, ``end``, ``duration``, ``deviated``, ``steady_states`` ``{before, after,
during}``, ``run``, ``rollbacks``; each activity ``activity``, ``status``, ``output``,
``start``, ``end``, ``duration``, ``exception``, probes also ``tolerance_met``)."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from catga_bench._version import __version__

STATUSES = ("completed", "failed", "aborted", "interrupted")


def now_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def new_journal(experiment: dict[str, Any]) -> dict[str, Any]:
    return {
        # Chaos Toolkit's version field; the value names this runner, not chaoslib
        "chaoslib-version": f"catga-bench-chaos/{__version__}",
        "platform": platform.platform(),
        "node": platform.node(),
        "experiment": experiment,
        "start": None,
        "status": None,
        "deviated": False,
        "steady_states": {"before": None, "after": None, "during": []},
        "run": [],
        "rollbacks": [],
        "end": None,
        "duration": None,
        "environment": {},
    }


def write_journal(journal: dict[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(journal, indent=2, default=str) + "\n")
    return p
