"""``catga-bench bench-brokers`` runs end to end on private brokers and reports every figure
(ratios are a benchmark's business, not a test's: only shape and loss are asserted here)."""

from __future__ import annotations

import json
from pathlib import Path

from _support import require_tool

from catga_bench.bench.brokers import GOALS, main


def test_bench_brokers_quick_reports_every_figure_and_loses_nothing(tmp_path: Path) -> None:
    require_tool("nats-server", "apt-get install -y nats-server")
    require_tool("redis-server", "apt-get install -y redis-server")
    out = tmp_path / "figures.json"
    code = main(["--quick", "--json", str(out)])
    figures = {f["name"]: f for f in json.loads(out.read_text())}
    assert set(figures) == set(GOALS)
    for f in figures.values():
        assert f["raw_rate"] > 0 and f["ours_rate"] > 0, f
        assert f["lost"] == 0, f
        assert f["ratio"] == round(f["ours_rate"] / f["raw_rate"], 3)
        assert f["passed"] == (f["goal"] is None or f["ratio"] >= f["goal"])
    assert code == (0 if all(f["passed"] for f in figures.values()) else 1)


def test_bench_brokers_rejects_an_unknown_transport(capsys) -> None:
    assert main(["--transports", "kafka"]) == 2
    assert "allowed: nats, redis" in capsys.readouterr().err
