"""catga-bench compare's inputs and outputs: loading run folders, every bad input (one line on
stderr, exit 2), folder-vs-folder verdicts and their report.json/md/html, and command sides run
interleaved (a tiny Python command stands in for Locust, so this stays fast)."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from catga_bench.compare import compare_folders, load_runs
from catga_bench.compare.cli import main
from catga_bench.compare.config import CompareConfig, load_config
from catga_bench.compare.render import render_html, render_markdown
from catga_bench.compare.runner import CommandSide, parse_side
from catga_bench.compare.session import run_comparison
from catga_bench.compare.verdict import compare_runs
from catga_bench.errors import ConfigError


def _report(p99: float = 25.0, *, scenario: str = "service_time", transport: str = "embedded",
            errors: float = 0.0, rate: float = 500.0) -> dict[str, Any]:
    return {"scenario": scenario, "transport": transport, "sut": {"kind": "core"},
            "latency_ms": {"p50": p99 * 0.8, "p99": p99, "p999": p99 * 1.2},
            "offered_rate": 500, "achieved_rate": rate, "error_ratio": errors, "lost": 0,
            "duplicates": 0, "exit_code": 0, "passed": True}


def _folder(root: Path, name: str, reports: list[dict[str, Any]]) -> Path:
    for i, r in enumerate(reports, 1):
        d = root / name / f"run-{i:02d}"
        d.mkdir(parents=True)
        (d / "report.json").write_text(json.dumps(r))
    return root / name


P99_BASE = [25.0, 25.4, 24.7, 25.2, 24.9]
P99_SLOW = [27.6, 27.9, 27.2, 28.1, 27.5]


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


# ---------------------------------------------------------------------------- loading runs
def test_load_runs_reads_every_report_recursively_and_skips_comparisons(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "base", [_report(p) for p in P99_BASE])
    (folder / "deep" / "er").mkdir(parents=True)
    (folder / "deep" / "er" / "report.json").write_text(json.dumps(_report(30.0)))
    (folder / "report.json").write_text(json.dumps({"kind": "comparison", "scenario": "x"}))
    runs = load_runs(folder)
    assert sorted(r.p99_ms for r in runs) == sorted([*P99_BASE, 30.0])
    assert {r.scenario for r in runs} == {"service_time"}
    assert runs[0].sut == "core" and runs[0].achieved_rate == 500.0


@pytest.mark.parametrize(("reports", "match"), [
    ([], "no run reports"),
    ([_report(scenario="a"), _report(scenario="b")], "different scenarios"),
    ([_report(transport="nats"), _report()], "different transports"),
])
def test_load_runs_rejects(tmp_path: Path, reports: list[dict[str, Any]], match: str) -> None:
    folder = _folder(tmp_path, "side", reports)
    folder.mkdir(exist_ok=True)
    with pytest.raises(ConfigError, match=match):
        load_runs(folder)


def test_load_runs_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such folder"):
        load_runs(tmp_path / "nope", "baseline")


def test_config_file_toml_and_yaml(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('metrics = ["p99_ms", "lost"]\nmargin = 0.05\n[limits]\nlost = 2\n')
    cfg = load_config(toml)
    assert cfg.metrics == ("p99_ms", "lost") and cfg.margin == 0.05 and cfg.limits == {"lost": 2}
    yml = tmp_path / "c.yaml"
    yml.write_text("alpha: 0.01\nmetrics: p99_ms,achieved_rate\n")
    assert load_config(yml).alpha == 0.01
    assert load_config(yml).metrics == ("p99_ms", "achieved_rate")
    assert load_config(yml, CompareConfig(margin=0.1)).margin == 0.1


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("args", "match"), [
    (["{empty}", "{base}"], "baseline: no run reports"),
    (["{base}", "{mixed}"], "candidate: runs from different scenarios"),
    (["{base}", "{other}"], "different scenarios"),
    (["{base}", "{base}", "--metrics", "p99_ms,p98"], "unknown metric 'p98'; allowed: p99_ms"),
    (["{base}", "{base}", "--margin", "0"], "--margin: must be in (0, 1)"),
    (["{base}", "{base}", "--margin", "1"], "--margin: must be in (0, 1)"),
    (["{base}", "{base}", "--margin", "-0.1"], "--margin: must be in (0, 1)"),
    (["{base}", "{base}", "--alpha", "0.9"], "--alpha"),
    (["{base}", "{base}", "--runs", "1"], "--runs: must be >= 2"),
    (["{base}", "{base}", "--max-runs", "3"], "--max-runs"),
    (["{base}", "{base}", "--config", "{bad_key}"], "unknown key 'thresholds'; allowed: metrics"),
    (["{base}", "{base}", "--config", "{bad_metric}"], "unknown metric 'latency'"),
    (["{base}", "{base}", "--config", "{bad_limit}"], "limits: unknown absolute metric"),
    (["{base}"], "BASELINE and CANDIDATE"),
    (["{base}", "{tmp}/missing"], "candidate: no such folder"),
    (["{base}", "no-such-program-xyz --flag"], "candidate: command not found"),
    (["--self-test", "-f", "{tmp}/nope.py"], "-f/--scenario: no such file"),
    (["{base}", "{base}", "--margin", "lots"], "argument --margin: invalid float value"),
    (["{base}", "{base}", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          args: list[str], match: str) -> None:
    paths = {
        "tmp": str(tmp_path),
        "base": str(_folder(tmp_path, "base", [_report(p) for p in P99_BASE])),
        "mixed": str(_folder(tmp_path, "mixed", [_report(), _report(scenario="b")])),
        "other": str(_folder(tmp_path, "other", [_report(scenario="b")])),
        "empty": str(tmp_path / "empty"),
    }
    (tmp_path / "empty").mkdir()
    for name, text in {"bad_key": "thresholds = 1\n", "bad_metric": 'metrics = ["latency"]\n',
                       "bad_limit": "[limits]\np99_ms = 3\n"}.items():
        (tmp_path / f"{name}.toml").write_text(text)
        paths[name] = str(tmp_path / f"{name}.toml")
    argv = [a.format(**paths) for a in args]
    assert main([*argv, "--report-dir", str(tmp_path / "out")]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("catga-bench compare: error: ")
    assert match in line


# ---------------------------------------------------------------------------- folders
def test_folders_regressed_exit_1_and_reports_written(tmp_path: Path) -> None:
    base = _folder(tmp_path, "base", [_report(p) for p in P99_BASE])
    cand = _folder(tmp_path, "cand", [_report(p) for p in P99_SLOW])
    out = tmp_path / "out"
    assert main([str(base), str(cand), "--report-dir", str(out),
                 "--json", str(tmp_path / "c.json")]) == 1
    data = json.loads((out / "report.json").read_text())
    assert data["kind"] == "comparison" and data["outcome"] == "regressed"
    p99 = next(m for m in data["metrics"] if m["metric"] == "p99_ms")
    assert p99["verdict"] == "regressed" and p99["ratio"] > 1.09
    assert len(data["baseline_runs"]) == 5 and len(data["candidate_runs"]) == 5
    assert json.loads((tmp_path / "c.json").read_text())["exit_code"] == 1
    md = (out / "report.md").read_text()
    assert "| p99_ms |" in md and "regressed" in md and "run-03" in md
    assert 'class="banner fail"' in (out / "report.html").read_text()
    # the comparison report beside the runs is never read back as a run
    assert len(load_runs(out.parent / "cand")) == 5


def test_folders_same_exit_0(tmp_path: Path) -> None:
    base = _folder(tmp_path, "base", [_report(p) for p in P99_BASE])
    cand = _folder(tmp_path, "cand", [_report(p * 1.002) for p in reversed(P99_BASE)])
    assert main([str(base), str(cand), "--report-dir", str(tmp_path / "out")]) == 0


def test_error_ratio_zero_to_one_percent_with_one_run_a_side_exit_1(tmp_path: Path) -> None:
    base = _folder(tmp_path, "base", [_report()])
    cand = _folder(tmp_path, "cand", [_report(errors=0.01)])
    assert main([str(base), str(cand), "--report-dir", str(tmp_path / "out")]) == 1
    c = compare_folders(base, cand)
    assert [m.metric for m in c.metrics if m.verdict == "regressed"] == ["error_ratio"]


def test_rendering_shows_metrics_reasons_and_runs(tmp_path: Path) -> None:
    c = compare_folders(_folder(tmp_path, "b", [_report(p) for p in P99_BASE]),
                        _folder(tmp_path, "c", [_report(p) for p in P99_SLOW]))
    md, page = render_markdown(c), render_html(c)
    for text in ("Welch", "Mann-Whitney", "95% CI", "detectable", "worse by", "CV"):
        assert text in md and text in page
    assert len(re.findall(r"^\| baseline \| \d \|", md, re.M)) == 5
    assert len(re.findall(r"^\| candidate \| \d \|", md, re.M)) == 5
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page


# ---------------------------------------------------------------------------- commands
#: a stand-in for a Locust run: writes a report whose P99 is argv[1] (scaled by SLOWDOWN)
FAKE = ("import json, os, sys; d = sys.argv[2]; os.makedirs(d, exist_ok=True); "
        "f = float(os.environ.get('CATGA_BENCH_SLOWDOWN', '1')); "
        "json.dump({'scenario': 's', 'transport': 'embedded', 'latency_ms': {'p99': "
        "float(sys.argv[1]) * f}, 'achieved_rate': 500.0, 'error_ratio': 0.0, 'lost': 0, "
        "'duplicates': 0, 'exit_code': 0}, open(os.path.join(d, 'report.json'), 'w'))")


def _fake(p99: str, env: dict[str, str] | None = None, name: str = "candidate") -> CommandSide:
    return CommandSide(name, (sys.executable, "-c", FAKE, p99, "{report_dir}"), env or {})


def test_command_sides_run_interleaved_and_seeded(tmp_path: Path) -> None:
    lines: list[str] = []
    c = run_comparison(_fake("25", name="baseline"), _fake("25", {"CATGA_BENCH_SLOWDOWN": "1.2"}),
                       CompareConfig(metrics=("p99_ms",)), runs=3, max_runs=3,
                       out_dir=tmp_path, progress=lines.append)
    assert [ln.split("]")[1].split(" run")[0].strip() for ln in lines] == \
        ["baseline", "candidate"] * 3
    assert c.outcome == "regressed"
    assert (tmp_path / "candidate" / "run-03" / "report.json").is_file()


def test_inconclusive_runs_more_then_exit_3_with_the_runs_needed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # P99 10 ms on odd runs, 40 ms on even ones, both sides: huge spread, no verdict possible
    noisy = (f"{sys.executable} -c \"import json,os,sys; d=sys.argv[1]; "
             "json.dump({'scenario':'s','transport':'t','latency_ms':{'p99':"
             "[40,10][int(d[-2:]) % 2]},"
             "'achieved_rate':500}, open(os.path.join(d,'report.json'),'w'))\" {report_dir}")
    code = main([noisy, noisy, "--runs", "2", "--max-runs", "4", "--metrics", "p99_ms",
                 "--report-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 3
    assert "2 more per side" in out and "[8/8]" in out
    assert "cannot tell at this noise; need >= " in out


def test_parse_side(tmp_path: Path) -> None:
    assert parse_side(str(tmp_path), "baseline") == tmp_path
    side = parse_side(f"{shlex.quote(sys.executable)} -m locust -f x.py", "candidate")
    assert isinstance(side, CommandSide)
    assert side.command(tmp_path)[-2:] == ["--report-dir", str(tmp_path)]
    with pytest.raises(ConfigError, match="no such folder"):
        parse_side(str(tmp_path / "nope"), "baseline")


def test_self_test_verdict_needs_same_and_regressed(tmp_path: Path) -> None:
    from catga_bench.compare.selftest import SelfTest

    base = load_runs(_folder(tmp_path, "b", [_report(p) for p in P99_BASE]))
    same = load_runs(_folder(tmp_path, "s", [_report(p * 1.001) for p in P99_BASE]))
    slow = load_runs(_folder(tmp_path, "c", [_report(p) for p in P99_SLOW]))
    cfg = CompareConfig()
    ok = SelfTest(compare_runs(base, same, cfg), compare_runs(base, slow, cfg))
    assert ok.passed and ok.exit_code == 0 and ok.lines()[-1] == "SELF-TEST PASSED"
    assert ok.p99_noise()["baseline"] == pytest.approx(0.01, abs=0.005)
    blind = SelfTest(compare_runs(base, same, cfg), compare_runs(base, same, cfg))
    assert not blind.passed and blind.exit_code == 1
    assert any("smallest P99 change this host can detect at 5 runs" in ln
               for ln in blind.lines())
