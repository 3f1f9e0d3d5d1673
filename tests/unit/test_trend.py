"""The history of releases (catga_bench/compare/history.py) and ``catga-bench trend``'s change
points (Apache Otava), on synthetic runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catga_bench.compare.history import (
    check_label,
    is_history,
    latest_release,
    load_history,
    store_release,
)
from catga_bench.compare.trend import find_change_points, main
from catga_bench.errors import ConfigError

WOBBLE = (0.0, 0.012, -0.008, 0.005, -0.011, 0.009)


def _run(folder: Path, p99: float, rate: float = 1000.0, scenario: str = "s") -> Path:
    folder.mkdir(parents=True)
    path = folder / "report.json"
    path.write_text(json.dumps({"scenario": scenario, "transport": "embedded",
                                "latency_ms": {"p99": p99}, "achieved_rate": rate,
                                "error_ratio": 0.0}))
    (folder / "report.md").write_text("# run\n")
    return path


def _history(tmp: Path, p99_by_release: list[float], runs: int = 3) -> Path:
    history = tmp / "history"
    k = 0
    for i, p99 in enumerate(p99_by_release):
        reports = []
        for j in range(runs):
            reports.append(_run(tmp / "runs" / f"r{i}-{j}", p99 * (1 + WOBBLE[k % 6]),
                                1000.0 * (1 - WOBBLE[(k + 2) % 6] / 4)))
            k += 1
        rel = store_release(history, f"v1.{i}", reports)
        # stored_at has 1 s resolution: make the order explicit
        meta = json.loads((rel.path / "release.json").read_text())
        meta["stored_at"] = f"2026-01-0{i + 1}T00:00:00Z"
        (rel.path / "release.json").write_text(json.dumps(meta))
    return history


def test_store_and_load_keep_release_order_and_runs(tmp_path: Path) -> None:
    history = _history(tmp_path, [10.0, 10.0, 12.0])
    releases = load_history(history)
    assert [r.label for r in releases] == ["v1.0", "v1.1", "v1.2"]
    assert all(len(r.runs) == 3 for r in releases)
    assert (releases[0].runs[0] / "report.md").exists()
    assert latest_release(history).label == "v1.2" and is_history(history)
    assert not is_history(tmp_path / "runs")


def test_storing_a_label_twice_or_a_bad_label_is_an_error(tmp_path: Path) -> None:
    history = _history(tmp_path, [10.0])
    with pytest.raises(ConfigError, match="already in"):
        store_release(history, "v1.0", [_run(tmp_path / "x", 10.0)])
    with pytest.raises(ConfigError, match="not a release label"):
        check_label("../etc")
    with pytest.raises(ConfigError, match="no runs"):
        store_release(history, "v9", [])


def test_a_step_up_in_p99_is_a_worse_change_point_at_its_release(tmp_path: Path) -> None:
    history = _history(tmp_path, [10.0, 10.0, 10.0, 12.0, 12.0, 12.0])
    points, notes = find_change_points(history, ["p99_ms", "achieved_rate"])
    assert notes == []
    [cp] = points
    assert (cp.metric, cp.release, cp.previous_release) == ("p99_ms", "v1.3", "v1.2")
    assert cp.worse and 15 < cp.change_percent < 25 and cp.pvalue < 0.001


def test_a_flat_history_has_no_change_point(tmp_path: Path) -> None:
    history = _history(tmp_path, [10.0] * 6)
    points, _ = find_change_points(history, ["p99_ms"])
    assert points == []


def test_a_short_history_is_noted_not_analysed(tmp_path: Path) -> None:
    history = _history(tmp_path, [10.0, 12.0], runs=2)
    points, notes = find_change_points(history, ["p99_ms"])
    assert points == [] and "need >= 6" in notes[0]


def test_cli_writes_json_and_exits_0_with_a_change(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    history = _history(tmp_path, [10.0, 10.0, 10.0, 13.0, 13.0, 13.0])
    out = tmp_path / "trend.json"
    assert main([str(history), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["advice_only"] is True
    assert [c["release"] for c in doc["change_points"]] == ["v1.3"]
    assert "v1.2 -> v1.3" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "needle"), [
    (["NOPE"], "no such directory"),
    (["HIST", "--metrics", "p42"], "unknown metric 'p42'; allowed: p99_ms"),
    (["HIST", "--max-pvalue", "2"], "--max-pvalue: must be in (0, 1)"),
])
def test_bad_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      argv: list[str], needle: str) -> None:
    history = _history(tmp_path, [10.0])
    argv = [str(history) if a == "HIST" else str(tmp_path / a) if a == "NOPE" else a
            for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_a_release_with_two_scenarios_keeps_them_apart(tmp_path: Path) -> None:
    history = tmp_path / "history"
    for i, p99 in enumerate([10.0, 10.0, 10.0, 14.0, 14.0, 14.0]):
        a = _run(tmp_path / "runs" / f"a{i}", p99 * (1 + WOBBLE[i]), scenario="a")
        b = _run(tmp_path / "runs" / f"b{i}", 5.0 * (1 + WOBBLE[(i + 3) % 6]), scenario="b")
        rel = store_release(history, f"v{i}", [a, b])
        meta = json.loads((rel.path / "release.json").read_text())
        assert meta["scenarios"] == ["a-embedded", "b-embedded"]
        meta["stored_at"] = f"2026-01-0{i + 1}T00:00:00Z"
        (rel.path / "release.json").write_text(json.dumps(meta))
    points, _ = find_change_points(history, ["p99_ms"])
    assert [(cp.scenario, cp.release) for cp in points] == [("a", "v3")]
