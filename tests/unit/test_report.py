"""Tests for catga_bench.judge.report: the three report files and the terminal summary."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from catga_bench.judge import report as rep

SLO_NAMES = ("p99_latency", "max_error_ratio", "lost", "min_throughput", "loop_lag_p99")


def _timeline(n: int) -> dict[str, list[Any]]:
    return {
        "t_s": [float(i) for i in range(n)],
        "sent": [1000] * n,
        "completed": [990 - 10 * (i % 3) for i in range(n)],
        "rejected": [0, 0, 5, 40, 0, 0][:n] + [0] * max(0, n - 6),
        "timeouts": [0, 1, 0, 7, 2, 0][:n] + [0] * max(0, n - 6),
        "errors": [0, 3, 0, 9, 1, 0][:n] + [0] * max(0, n - 6),
        "p50_ms": [None] + [2.5 + i for i in range(1, n)],
        "p99_ms": [None] + [40.0 + 30 * i for i in range(1, n)],
        "max_ms": [None] + [90.0 + 50 * i for i in range(1, n)],
        "breaker_open": [0, 0, 1, 2, 1, 0][:n] + [0] * max(0, n - 6),
        "queue_depth": [0, 3, 12, 30, 4, 0][:n] + [0] * max(0, n - 6),
        "in_flight": [5, 8, 20, 64, 10, 6][:n] + [6] * max(0, n - 6),
        "loop_lag_ms": [0.2, None, 1.5, 9.0, 0.4, 0.3][:n] + [0.3] * max(0, n - 6),
    }


def _slo_row(name: str, limit: Any, value: Any, passed: bool, unit: str = "",
             op: str = "<=") -> dict[str, Any]:
    return {"name": name, "limit": limit, "value": value, "passed": passed, "unit": unit,
            "op": op, "description": f"{name} target"}


def _full_report() -> dict[str, Any]:
    """A complete report of a failed run (p99 missed) with every documented key."""
    pct = {"p50": 3.1, "p90": 40.2, "p99": 230.1, "p999": 480.0, "max": 512.7, "mean": 12.4}
    return {
        "scenario": "high_fanout",
        "transport": "embedded",
        "qos": 1,
        "started_at": "2025-11-23T07:00:00+00:00",
        "finished_at": "2025-11-23T07:00:06+00:00",
        "duration_s": 6.0,
        "workers": 1,
        "offered_rate": 1000.0,
        "sent_rate": 998.5,
        "achieved_rate": 987.25,
        "latency_ms": pct,
        "service_time_ms": {"p50": 1.2, "p90": 8.0, "p99": 35.5, "p999": 60.0, "max": 70.1,
                            "mean": 2.2},
        "streams": {
            "fast": {"sent": 5000, "completed": 4990, "slo": True, "latency_ms": pct, "qos": 1,
                     "lost": 0, "duplicates": 2},
            "slow": {"sent": 1000, "completed": 900, "slo": False, "latency_ms": pct},
        },
        "sent": 6000, "handled": 5890, "lost": 0, "duplicates": 0, "dead_lettered": 3,
        "handlers": {"h_ok": {"handled": 5000, "failed": 0},
                     "h_flaky": {"handled": 890, "failed": 12}},
        "errors": {"handler_failed": 12, "circuit_open": 300, "timeout": 40, "rejected": 0},
        "rejected": 45, "timeouts": 10,
        "breaker": {"opened": 2, "half_opened": 2, "closed": 2, "state": "closed",
                    "breakers": {"h_flaky": "closed"}},
        "event_loop_lag_ms": {"p50": 0.2, "p99": 8.5, "max": 9.0},
        "slo": [
            _slo_row("p99_latency", 100.0, 230.1, False, "ms", "<"),
            _slo_row("max_error_ratio", 0.01, 0.002, True),
            _slo_row("lost", 0, 0, True),
            _slo_row("min_throughput", 900, 987.25, True, " msg/s", ">="),
            _slo_row("loop_lag_p99", 50, 8.5, True, "ms", "<"),
        ],
        "passed": False,
        "exit_code": 1,
        "verdict": "FAIL: p99 latency 230.1 ms > 100 ms",
        "notes": ["the slow stream does not count for the latency SLO"],
        "timeline": _timeline(6),
        "environment": {"python": "3.11.7", "locust": "2.31", "cpu_count": 8,
                        "platform": "Linux-x86_64", "argv": ["-f", "high_fanout.py"]},
    }


@pytest.fixture
def full_report() -> dict[str, Any]:
    return _full_report()


@pytest.fixture(scope="module")
def full_html() -> str:
    """The HTML of the full report, rendered once (matplotlib is the slow part)."""
    return rep.render_html(_full_report())


def test_write_reports_writes_three_files_and_json_round_trips(
    full_report: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "nested" / "run-1"
    paths = rep.write_reports(full_report, out)
    assert set(paths) == {"json", "md", "html"}
    assert [p.name for p in paths.values()] == ["report.json", "report.md", "report.html"]
    assert all(p.parent == out and p.stat().st_size > 0 for p in paths.values())
    loaded = json.loads(paths["json"].read_text())
    assert list(loaded) == list(full_report)  # same keys, same order
    assert loaded == full_report
    assert paths["json"].read_text().startswith('{\n  "scenario": "high_fanout"')



def test_write_reports_writes_only_the_formats_asked_and_always_json(
    full_report: dict[str, Any], tmp_path: Path
) -> None:
    paths = rep.write_reports(full_report, tmp_path / "a", formats=("md",))
    assert set(paths) == {"json", "md"}
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["report.json", "report.md"]
    paths = rep.write_reports(full_report, tmp_path / "b", formats=())
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["report.json"]
    assert json.loads(paths["json"].read_text()) == full_report

def test_markdown_has_verdict_slo_table_and_figures(full_report: dict[str, Any]) -> None:
    md = rep.render_markdown(full_report)
    assert full_report["verdict"] in md
    assert "**FAIL**, exit code 1 (a target missed)" in md
    for name in SLO_NAMES:
        assert re.search(rf"^\| {name} \|", md, re.MULTILINE), name
    assert "| p99_latency | < 100 ms | 230.1 ms | FAIL |" in md
    assert "| min_throughput | >= 900 msg/s | 987.2 msg/s | PASS |" in md
    assert "| p99 | 230.1 | 35.5 |" in md  # intended time vs service time
    assert "intended send time" in md and "coordinated omission" in md
    assert "| circuit_open | 300 |" in md
    assert md.index("| circuit_open |") < md.index("| handler_failed |")  # most frequent first
    assert "| fast | 1 | yes | 5,000 | 4,990 |" in md
    assert "| lost | duplicates |" in md and "| 0 | 2 |" in md  # per stream, so per QoS
    assert "| offered | 1,000 |" in md
    assert "- the slow stream does not count for the latency SLO" in md
    assert "| argv | -f high_fanout.py |" in md


def test_html_is_self_contained_with_four_inline_svg_plots(full_html: str) -> None:
    assert full_html.startswith("<!DOCTYPE html>")
    assert full_html.count("<svg") == 4
    assert "<script" not in full_html.lower()
    assert "<?xml" not in full_html and "<!DOCTYPE svg" not in full_html
    assert not re.search(r"""(src|href)=["']https?:""", full_html)
    assert "FAIL: p99 latency 230.1 ms &gt; 100 ms" in full_html
    for name in SLO_NAMES:
        assert f"<td>{name}</td>" in full_html
    assert '<td class="fail">FAIL</td>' in full_html
    assert "p99 SLO 100 ms" in full_html  # the dashed SLO line is labelled in the latency plot
    assert "no timeline data" not in full_html


def test_rendering_html_leaves_no_open_pyplot_figures(full_report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    rep.render_html(full_report)
    assert plt.get_fignums() == before


def test_nan_and_inf_become_null_in_json(full_report: dict[str, Any], tmp_path: Path) -> None:
    full_report["latency_ms"]["p99"] = math.nan
    full_report["achieved_rate"] = math.inf
    full_report["slo"][0]["value"] = -math.inf
    full_report["timeline"]["p99_ms"][2] = math.nan
    paths = rep.write_reports(full_report, tmp_path)
    text = paths["json"].read_text()
    assert "NaN" not in text and "Infinity" not in text
    loaded = json.loads(text)
    assert loaded["latency_ms"]["p99"] is None
    assert loaded["achieved_rate"] is None
    assert loaded["slo"][0]["value"] is None
    assert loaded["timeline"]["p99_ms"][2] is None
    assert "| p99 | — | 35.5 |" in paths["md"].read_text()


@pytest.mark.parametrize("partial", [
    {},
    {"scenario": "slow_handlers", "passed": False, "exit_code": 3},
    {"scenario": "x", "timeline": {"t_s": []}, "slo": None, "handlers": None, "latency_ms": None,
     "breaker": {}, "streams": {"fast": None}, "notes": None, "environment": None},
])
def test_partial_report_still_writes_all_files(partial: dict[str, Any], tmp_path: Path) -> None:
    paths = rep.write_reports(partial, tmp_path / "out")
    assert all(p.is_file() for p in paths.values())
    assert json.loads(paths["json"].read_text()) == partial
    page = paths["html"].read_text()
    assert "no timeline data" in page
    assert "<svg" not in page
    md = paths["md"].read_text()
    assert "no SLO targets evaluated" in md
    assert "—" in md  # missing figures render as a dash


def test_partial_report_headline_shows_fail_and_exit_code() -> None:
    md = rep.render_markdown({"scenario": "slow_handlers", "passed": False, "exit_code": 3})
    assert md.startswith("# catga-bench report: slow_handlers\n")
    assert "**FAIL**, exit code 3 (environment failure)" in md
    assert "FAIL: no verdict recorded" in md


def test_wrongly_typed_values_do_not_crash(tmp_path: Path) -> None:
    odd = {"scenario": 7, "qos": "2", "latency_ms": [1, 2], "slo": [None, {"name": "p99"}, 3],
           "handlers": {"h": None, "g": {"handled": "many"}}, "errors": {"x": None},
           "timeline": {"t_s": [0, 1, 2], "sent": [1, "two"], "p99_ms": [0, -1, None],
                        "breaker_open": None},
           "environment": {"argv": None, "nested": {"a": 1}}, "breaker": {"breakers": ["a"]}}
    paths = rep.write_reports(odd, tmp_path)
    page = paths["html"].read_text()
    assert page.count("<svg") == 4  # short, ragged series are still plotted (gaps as NaN)
    assert "| p99 | — | — | — |" in paths["md"].read_text()  # the SLO row without values


def test_text_is_html_escaped(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    page = rep.render_html({"scenario": evil, "verdict": f"FAIL: {evil}", "notes": [evil],
                            "errors": {evil: 1}, "environment": {"argv": [evil]}})
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_many_handlers_are_compacted(full_report: dict[str, Any]) -> None:
    full_report["handlers"] = {f"handler_{i:03d}": {"handled": 1000 + i, "failed": 0}
                               for i in range(150)}
    full_report["handlers"]["handler_077"]["failed"] = 5
    md = rep.render_markdown(full_report)
    rows = re.findall(r"^\| handler_\d{3} \|", md, re.MULTILINE)
    assert 1 <= len(rows) <= 20
    assert rows[0] == "| handler_077 |"  # failures first
    assert rows[1] == "| handler_149 |"  # then the busiest
    assert "… 130 more handlers" in md
    assert "150 handlers:" in md
    html_rows = re.findall(r"<tr><td>handler_\d{3}</td>", rep.render_html(full_report))
    assert len(html_rows) == len(rows)


def test_print_summary_shows_fail_and_failing_slo(full_report: dict[str, Any]) -> None:
    full_report["handlers"] = {f"handler_{i:03d}": {"handled": 1, "failed": 0}
                               for i in range(150)}
    console = Console(record=True, width=120)
    rep.print_summary(full_report, console=console)
    out = console.export_text()
    assert "FAIL" in out
    fail_lines = [line for line in out.splitlines() if "p99_latency" in line]
    assert fail_lines and "FAIL" in fail_lines[0] and "230.1 ms" in fail_lines[0]
    assert full_report["verdict"] in out
    assert "achieved 987.2 / offered 1,000 msg/s" in out
    assert "lost 0" in out and "duplicates 0" in out and "handled 5,890" in out
    assert "handler_" not in out  # never the handler list in the terminal
    assert len(out.splitlines()) < 25


def test_print_summary_of_an_empty_report() -> None:
    console = Console(record=True, width=120)
    rep.print_summary({"exit_code": 3}, console=console)
    out = console.export_text()
    assert "no SLO targets evaluated" in out
    assert "FAIL" in out and "exit code 3 (environment failure)" in out


def test_importing_report_does_not_import_matplotlib_or_rich() -> None:
    code = ("import sys, catga_bench; before = set(sys.modules); import catga_bench.judge.report; "
            "new = set(sys.modules) - before; "
            "print(sorted(m for m in new if m.split('.')[0] in ('matplotlib', 'rich')))")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root, check=True, timeout=30)
    assert out.stdout.strip() == "[]"
