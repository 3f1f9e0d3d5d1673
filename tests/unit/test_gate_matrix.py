"""``catga-bench gate --faults``: the fault matrix's planning, the judging of a chaos run's exit
code and journal, the key figures, and the cell runner on a stand-in chaos command (no broker,
no Locust: every test here takes well under a second)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from catga_bench.errors import EXIT_ENVIRONMENT, EXIT_FAIL, EXIT_PASS, EXIT_USAGE, ConfigError
from catga_bench.suite import run as suite_run
from catga_bench.suite.cases import FAULT_NAMES, FAULTS, Case, Fault
from catga_bench.suite.cli import _experiments_dir, _overall, main, parse_faults
from catga_bench.suite.judging import CaseResult, judge_fault_cell
from catga_bench.suite.plan import plan_faults, schedule_faults
from catga_bench.suite.printing import _key_figures, fault_key_figures, print_table
from catga_bench.suite.run import fault_command, fault_seconds, run_fault_cell

REPO = Path(__file__).resolve().parents[2]
ORDER = ("link_latency", "link_partition", "bandwidth_squeeze", "reset_peer_storm",
         "broker_kill_restart", "broker_pause", "handler_outage", "overload_10x")


def _fault(name: str) -> Fault:
    return next(f for f in FAULTS if f.name == name)


# ----------------------------------------------------------------------------- the table
def test_faults_are_the_shipped_experiments_in_order() -> None:
    assert FAULT_NAMES == ORDER
    for f in FAULTS:
        assert (REPO / "experiments" / f"{f.name}.yaml").is_file(), f.name
        assert f.what and "\n" not in f.what
        assert set(f.vars) == {"ci", "release"}
        assert f.vars["release"] == {}  # release = the file's defaults
        assert all(isinstance(v, str) for v in f.vars["ci"].values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        FAULTS[0].name = "x"  # type: ignore[misc]


def test_ci_vars_name_real_variables_and_keep_the_targets() -> None:
    import yaml

    for f in FAULTS:
        config = yaml.safe_load((REPO / "experiments" / f"{f.name}.yaml").read_text())[
            "configuration"]
        assert set(f.vars["ci"]) <= set(config), (f.name, f.vars["ci"])  # no typo'd variable
        assert int(f.vars["ci"]["duration"]) < int(config["duration"]), f.name  # shorter
    # the partition target is about a 10 s partition: CI shortens the run, never the partition
    part = _fault("link_partition").vars["ci"]
    assert "down_s" not in part and "recover_within_s" not in part
    assert int(part["duration"]) >= int(part["warmup_s"]) + 10 + 5
    # latency targets never share the machine with another cell
    assert {f.name for f in FAULTS if f.exclusive} == {"link_latency", "overload_10x"}


def test_schedule_faults_runs_exclusive_cells_alone() -> None:
    runs = plan_faults(list(ORDER), ["nats", "redis"])
    waves = schedule_faults(runs, 2)
    assert sorted(i for w in waves for i, _, _ in w) == list(range(len(runs)))  # each once
    for w in waves:
        assert 1 <= len(w) <= 2
        if any(f.exclusive for _, f, _ in w):
            assert len(w) == 1
    assert sum(len(w) == 2 for w in waves) == 6  # 12 shared cells, two at a time
    assert [len(w) for w in schedule_faults(runs, 1)] == [1] * len(runs)
    # with run lengths: longest first, the same fault on both brokers side by side
    length = {"link_partition": 22, "broker_kill_restart": 12}
    waves = schedule_faults(runs, 2, lambda f: length.get(f.name, 11))
    shared = [w for w in waves if len(w) == 2]
    assert [w[0][1].name for w in shared[:2]] == ["link_partition", "broker_kill_restart"]
    assert all(len({f.name for _, f, _ in w}) == 1 for w in shared)
    assert sorted(i for w in waves for i, _, _ in w) == list(range(len(runs)))
    with pytest.raises(ConfigError, match="--jobs"):
        schedule_faults(runs, 0)


# ----------------------------------------------------------------------------- planning
def test_parse_faults_all_and_subsets_in_matrix_order() -> None:
    assert parse_faults("all") == list(ORDER)
    assert parse_faults("overload_10x, link_latency,overload_10x") == [
        "link_latency", "overload_10x"]
    assert parse_faults("handler_outage,all") == list(ORDER)


@pytest.mark.parametrize("raw", ["nope", "link_latency,nope", ""])
def test_parse_faults_rejects_unknown_and_empty(raw: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_faults(raw)
    assert "--faults" in str(err.value)
    for name in ORDER:
        assert name in str(err.value)  # the allowed values are named


def test_plan_faults_every_fault_on_every_broker_embedded_skipped() -> None:
    cells = plan_faults(list(ORDER), ["embedded", "nats", "redis"])
    assert len(cells) == 16
    assert {t for _, t in cells} == {"nats", "redis"}
    assert [(f.name, t) for f, t in cells] == (
        [(n, "nats") for n in ORDER] + [(n, "redis") for n in ORDER])
    # transports in the order given, faults in the matrix's order
    cells = plan_faults(["overload_10x", "link_partition"], ["redis", "embedded", "nats"])
    assert [(f.name, t) for f, t in cells] == [
        ("link_partition", "redis"), ("overload_10x", "redis"),
        ("link_partition", "nats"), ("overload_10x", "nats")]


def test_plan_faults_needs_a_broker_transport() -> None:
    with pytest.raises(ConfigError, match=r"add --transports nats,redis"):
        plan_faults(["handler_outage"], ["embedded"])


@pytest.mark.parametrize(("argv", "needle"), [
    (["--faults", "handler_outage"], "add --transports nats,redis"),  # default: embedded
    (["--faults", "all", "--transports", "embedded"], "add --transports nats,redis"),
    (["--faults", "nope", "--transports", "nats"], "--faults: unknown 'nope'; allowed: "
                                                   "link_latency, link_partition"),
    (["--faults", "", "--transports", "nats"], "--faults: empty list"),
    (["--faults", "handler_outage", "--transports", "nats", "--experiments", "/nonexistent"],
     "--experiments: no such directory"),
])
def test_fault_usage_errors_exit_2(argv: list[str], needle: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USAGE == 2
    assert needle in capsys.readouterr().err


def test_help_documents_the_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for word in (*ORDER, "--faults", "--experiments", "LIST|all", "ONLY the fault matrix"):
        assert word in out


def test_experiments_dir_default_and_explicit(tmp_path: Path) -> None:
    assert (_experiments_dir(None) / "handler_outage.yaml").is_file()
    assert _experiments_dir(str(tmp_path)) == tmp_path.resolve()


# ----------------------------------------------------------------------------- the command
def test_fault_command(tmp_path: Path) -> None:
    cell = tmp_path / "fault-broker_pause-redis"
    cmd = fault_command(_fault("broker_pause"), "redis", "ci", tmp_path, cell)
    assert cmd == [sys.executable, "-m", "catga_bench.chaos", "run",
                   str(tmp_path / "broker_pause.yaml"), "--var", "broker=redis",
                   *(x for k, v in _fault("broker_pause").vars["ci"].items()
                     for x in ("--var", f"{k}={v}")),
                   "--journal", str(cell / "journal.json"), "--workdir", str(cell / "work")]
    release = fault_command(_fault("broker_pause"), "nats", "release", tmp_path, cell)
    assert release[release.index("--var"):release.index("--journal")] == [
        "--var", "broker=nats"]


def test_fault_seconds(tmp_path: Path) -> None:
    for name in ("link_partition", "overload_10x"):
        assert fault_seconds(_fault(name), "ci", tmp_path) == int(
            _fault(name).vars["ci"]["duration"])
    (tmp_path / "broker_pause.yaml").write_text("configuration:\n  duration: 33\n")
    assert fault_seconds(_fault("broker_pause"), "release", tmp_path) == 33
    assert fault_seconds(_fault("handler_outage"), "release", tmp_path) == 0  # no file
    assert fault_seconds(_fault("handler_outage"), "release") == 0


# ----------------------------------------------------------------------------- judging
def _probe(name: str, type_: str, met: bool, output: Any = None,
           exception: list[str] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"activity": {"kind": "probe", "type": type_, "name": name},
                             "status": "succeeded" if met else "failed", "output": output,
                             "tolerance_met": met}
    if exception:
        entry["exception"] = exception
    return entry


def _load_report(checks: dict[str, tuple[Any, Any, bool]], recovery: dict[str, Any] | None,
                 figures: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "exit_code": 0, "report": "r.json", "figures": figures,
        "checks": [{"path": p, "expected": e, "actual": a, "passed": ok}
                   for p, (e, a, ok) in checks.items()]}
    if recovery is not None:
        out["recovery"] = recovery
    return out


FIGS = {"exit_code": 0, "lost": 0, "lost_by_qos.0": 7, "lost_by_qos.1": 0, "lost_by_qos.2": 0,
        "duplicates_by_qos.2": 0, "rejected": 0, "latency_ms.p99": 12.5, "breaker.opened": 2,
        "breaker.closed": 2}


def _journal(status: str, *, deviated: bool = False, load_output: Any = None,
             load_met: bool = True, before_met: bool = True, after_clean: bool = True,
             rollback_ok: bool = True, load_exception: list[str] | None = None,
             run: list[dict[str, Any]] | None = None,
             environment: dict[str, Any] | None = None) -> dict[str, Any]:
    before = [_probe("core answers", "core_ping", before_met),
              {**_probe("lost nothing", "load_report", True), "status": "skipped",
               "output": "the load run starts with the method: judged after"}]
    after = [_probe("core answers", "core_ping", True),
             _probe("link is clean", "proxy_has_no_toxics", after_clean),
             _probe("lost nothing", "load_report", load_met, load_output, load_exception)]
    rollbacks = [{"activity": {"kind": "action", "type": "toxic_remove",
                               "name": "remove every toxic"},
                  "status": "succeeded" if rollback_ok else "failed", "output": None}]
    return {"status": status, "deviated": deviated,
            "steady_states": {"before": {"steady_state_met": before_met, "probes": before},
                              "after": {"steady_state_met": True, "probes": after},
                              "during": []},
            "run": run or [], "rollbacks": rollbacks, "environment": environment or {}}


RECOVERED = {"baseline_per_s": 100.0, "threshold_per_s": 80.0, "min_during_fault_per_s": 0,
             "fault_s": 10.0, "recovered_after_s": 2.0, "within_s": 10, "passed": True}


def test_judge_pass() -> None:
    out = _load_report({"lost": (0, 0, True), "exit_code": ({"in": [0, 1]}, 0, True)},
                       RECOVERED, FIGS)
    j = judge_fault_cell(0, _journal("completed", load_output=out), "tail")
    assert j.status == "PASS"
    assert j.failed_targets == []
    assert [r["name"] for r in j.slo] == ["lost", "exit_code", "recovery", "core answers",
                                          "core answers", "link is clean",
                                          "remove every toxic"]
    assert all(r["passed"] for r in j.slo)
    assert j.figures == {"lost_qos0": 7, "lost_qos1": 0, "lost_qos2": 0, "duplicates_qos2": 0,
                         "rejected": 0, "p99_ms": 12.5, "breaker_opened": 2,
                         "breaker_closed": 2, "recovered_after_s": 2.0, "recover_within_s": 10}
    assert j.verdict == "completed: 7 targets met"


def test_judge_fail_names_every_missed_target() -> None:
    out = _load_report({"lost": (0, 3, False), "duplicates": (0, 0, True)},
                       {**RECOVERED, "recovered_after_s": None, "passed": False}, FIGS)
    journal = _journal("failed", deviated=True, load_output=out, load_met=False,
                       before_met=False, after_clean=False, rollback_ok=False)
    j = judge_fault_cell(1, journal, "tail")
    assert j.status == "FAIL"
    assert j.failed_targets == ["lost", "recovery", "core answers", "link is clean",
                                "remove every toxic"]
    assert j.figures["recovered_after_s"] is None
    assert j.verdict.startswith("failed (deviated): missed lost, recovery")
    assert "duplicates" not in j.failed_targets


def test_judge_fail_when_the_load_report_probe_raised() -> None:
    journal = _journal("failed", deviated=True, load_met=False,
                       load_exception=["RuntimeError: recovery: the report has no timeline\n"])
    j = judge_fault_cell(1, journal, "tail")
    assert j.status == "FAIL"
    assert j.failed_targets == ["lost nothing"]
    assert j.figures == {}


def test_judge_fail_on_a_method_probe() -> None:
    run = [_probe("still answering", "core_ping", False)]
    j = judge_fault_cell(1, _journal("failed", run=run,
                                     load_output=_load_report({}, None, FIGS)), "tail")
    assert j.status == "FAIL"
    assert j.failed_targets == ["still answering"]


def test_judge_error_without_a_journal() -> None:
    j = judge_fault_cell(3, None, "Traceback | OSError: no nats-server")
    assert j.status == "ERROR"
    assert "no journal (exit 3)" in j.verdict and "OSError: no nats-server" in j.verdict
    assert j.figures == {} and j.failed_targets == []
    assert "timed out" in judge_fault_cell(None, None, "t").verdict


def test_judge_error_when_aborted_or_inconsistent() -> None:
    aborted = _journal("aborted", environment={"error": "BrokerStartError: port in use\n"})
    j = judge_fault_cell(3, aborted, "log tail")
    assert j.status == "ERROR"
    assert j.verdict == "aborted (exit 3): BrokerStartError: port in use"
    failed_action = {"activity": {"kind": "action", "type": "broker_kill", "name": "kill it"},
                     "status": "failed", "output": None,
                     "exception": ["RuntimeError: no broker\n"]}
    j = judge_fault_cell(3, _journal("aborted", run=[failed_action]), "log tail")
    assert j.verdict == "aborted (exit 3): kill it: RuntimeError: no broker"
    # exit 0 without "completed", exit 1 with "completed", interrupted: never PASS or FAIL
    assert judge_fault_cell(0, _journal("failed"), "t").status == "ERROR"
    assert judge_fault_cell(1, _journal("completed"), "t").status == "ERROR"
    assert judge_fault_cell(130, _journal("interrupted"), "t").status == "ERROR"
    assert judge_fault_cell(None, _journal("interrupted"), "t").verdict.startswith(
        "interrupted (timed out)")


# ----------------------------------------------------------------------------- key figures
def _row(name: str, figures: dict[str, Any], status: str = "PASS") -> CaseResult:
    return CaseResult(f"fault:{name}", "nats", status, 0, "v", 14, 30.0, "/x", [], figures)


def test_key_figures_fault_rows() -> None:
    out = _load_report({}, RECOVERED, FIGS)
    figs = judge_fault_cell(0, _journal("completed", load_output=out), "").figures
    assert _key_figures(_row("link_partition", figs)) == (
        "QoS0 lost 7 (reported), QoS1 lost 0, QoS2 lost 0 dup 0, back after 2.0 s")
    assert _key_figures(_row("handler_outage", {**figs})) == (
        "QoS0 lost 7 (reported), QoS1 lost 0, QoS2 lost 0 dup 0, back after 2.0 s, "
        "breaker opened 2 closed 2")
    no_rec = {k: v for k, v in figs.items() if not k.startswith("recover")}
    assert _key_figures(_row("overload_10x", {**no_rec, "rejected": 1234})) == (
        "QoS0 lost 7 (reported), QoS1 lost 0, QoS2 lost 0 dup 0, rejected 1,234, p99 12.5 ms")
    not_back = {**figs, "recovered_after_s": None}
    assert _key_figures(_row("broker_pause", not_back)).endswith("not back within 10 s")
    assert _key_figures(_row("broker_pause", {})) == "-"


def test_key_figures_tolerate_missing_per_qos_figures() -> None:
    figures = {k: v for k, v in FIGS.items() if "_by_qos" not in k}
    out = _load_report({}, None, figures)
    figs = judge_fault_cell(0, _journal("completed", load_output=out), "").figures
    assert figs["lost_qos1"] is None
    assert fault_key_figures(_row("link_latency", figs)) == (
        "QoS0 lost - (reported), QoS1 lost -, QoS2 lost - dup -")


def test_table_and_overall_take_fault_rows(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich folds cells at 80 columns otherwise
    passed = _row("handler_outage", {"lost_qos1": 0})
    failed = dataclasses.replace(_row("link_partition", {}, "FAIL"),
                                 failed_targets=["recovery"])
    print_table([passed, failed])
    out = capsys.readouterr().out
    assert "fault:handler_outage" in out and "missed: recovery" in out
    assert _overall([passed]) == EXIT_PASS
    assert _overall([passed, failed]) == EXIT_FAIL
    assert _overall([failed, dataclasses.replace(passed, status="ERROR")]) == \
        EXIT_ENVIRONMENT


# ----------------------------------------------------------------------------- main()
def test_main_with_faults_alone_runs_only_the_matrix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    cells: list[tuple[str, str, str]] = []
    cases: list[tuple[str, str]] = []

    def fake_cell(fault: Fault, transport: str, profile: str, experiments: Path,
                  out_dir: Path) -> CaseResult:
        cells.append((fault.name, transport, profile))
        status = "FAIL" if fault.name == "overload_10x" else "PASS"
        return CaseResult(f"fault:{fault.name}", transport, status, 0, "v", 12, 0.1,
                          str(out_dir), ["rejected"] if status == "FAIL" else [],
                          {"lost_qos1": 0})

    def fake_case(case: Case, transport: str, *a: Any) -> CaseResult:
        cases.append((case.name, transport))
        return CaseResult(case.name, transport, "PASS", 0, "v", 1, 0.1, "", [], {})

    monkeypatch.setattr(suite_run, "run_fault_cell", fake_cell)
    monkeypatch.setattr(suite_run, "_run_isolated", fake_case)
    out_json = tmp_path / "gate.json"
    code = main(["--faults", "overload_10x,handler_outage", "--transports", "embedded,nats",
                 "--report-dir", str(tmp_path / "r"), "--json", str(out_json)])
    assert code == EXIT_FAIL
    assert cases == []
    assert cells == [("handler_outage", "nats", "ci"), ("overload_10x", "nats", "ci")]
    out = capsys.readouterr().out
    assert "0 case(s), 2 fault cell(s)" in out
    secs = _fault("handler_outage").vars["ci"]["duration"]
    assert f"[1/2] fault:handler_outage on nats ({secs} s) ..." in out
    secs = _fault("overload_10x").vars["ci"]["duration"]
    assert f"[2/2] fault:overload_10x on nats ({secs} s) ..." in out
    assert "[2/2] fault:overload_10x on nats: FAIL in 0.1 s" in out
    doc = json.loads(out_json.read_text())
    assert doc["faults"] == ["handler_outage", "overload_10x"]
    assert [(c["case"], c["status"]) for c in doc["cases"]] == [
        ("fault:handler_outage", "PASS"), ("fault:overload_10x", "FAIL")]
    assert doc["cases"][1]["failed_targets"] == ["rejected"]

    # with --only: the cases named first, then the matrix
    cells.clear()
    code = main(["--faults", "handler_outage", "--only", "high_fanout", "--transports",
                 "nats", "--report-dir", str(tmp_path / "r2"), "--profile", "release"])
    assert code == EXIT_PASS
    assert cases == [("high_fanout", "nats")]
    assert cells == [("handler_outage", "nats", "release")]
    out = capsys.readouterr().out
    assert "[1/2] high_fanout on nats" in out and "[2/2] fault:handler_outage on nats" in out


def test_main_without_faults_runs_no_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    def no_cell(*a: Any) -> CaseResult:
        raise AssertionError("no fault cell without --faults")

    monkeypatch.setattr(suite_run, "run_fault_cell", no_cell)
    monkeypatch.setattr(suite_run, "_run_isolated", lambda case, t, *a: CaseResult(
        case.name, t, "PASS", 0, "v", 1, 0.1, "", [], {}))
    assert main(["--only", "high_fanout", "--report-dir", str(tmp_path)]) == EXIT_PASS
    assert "fault cell" not in capsys.readouterr().out


# ----------------------------------------------------------------------------- the runner
def _stand_in(monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """Replace the chaos run by ``python -c script`` (argv[1]: the journal path)."""
    def command(fault: Fault, transport: str, profile: str, experiments: Path,
                cell_dir: Path) -> list[str]:
        return [sys.executable, "-c", script, str(cell_dir / "journal.json")]

    monkeypatch.setattr(suite_run, "fault_command", command)


def test_run_fault_cell_judges_the_journal_it_leaves(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out = _load_report({"lost": (0, 4, False)}, None, FIGS)
    journal = _journal("failed", deviated=True, load_output=out, load_met=False)
    src = tmp_path / "src.json"
    src.write_text(json.dumps(journal))
    _stand_in(monkeypatch, "import shutil, sys; print('chaos says hi'); "
                           f"shutil.copy({str(src)!r}, sys.argv[1]); sys.exit(1)")
    cell = tmp_path / "out" / "fault-handler_outage-nats"
    cell.mkdir(parents=True)
    (cell / "journal.json").write_text(json.dumps(_journal("completed")))  # a stale one
    r = run_fault_cell(_fault("handler_outage"), "nats", "ci", tmp_path, tmp_path / "out")
    assert (r.case, r.transport, r.status, r.exit_code) == ("fault:handler_outage", "nats",
                                                            "FAIL", 1)
    assert r.failed_targets == ["lost"]
    assert r.seconds == int(_fault("handler_outage").vars["ci"]["duration"])
    assert r.report_dir == str(cell)
    assert "chaos says hi" in (cell / "chaos.log").read_text()


def test_run_fault_cell_error_without_journal(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    cell = tmp_path / "fault-link_latency-redis"
    cell.mkdir()
    (cell / "journal.json").write_text(json.dumps(_journal("completed")))  # stale: removed
    _stand_in(monkeypatch, "import sys; print('boom: no toxiproxy'); sys.exit(3)")
    r = run_fault_cell(_fault("link_latency"), "redis", "ci", tmp_path, tmp_path)
    assert r.status == "ERROR" and r.exit_code == 3
    assert "no journal (exit 3)" in r.verdict and "boom: no toxiproxy" in r.verdict


def test_run_fault_cell_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in(monkeypatch, "import time; print('waiting', flush=True); time.sleep(60)")
    r = run_fault_cell(_fault("overload_10x"), "nats", "ci", tmp_path, tmp_path,
                       timeout_s=0.5)
    assert r.status == "ERROR" and r.exit_code is None
    assert "did not finish within 0.5 s" in r.verdict
    assert r.wall_s < 30


def test_the_gate_finds_the_shipped_scenarios_and_experiments_from_anywhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from catga_bench.suite.cli import _experiments_dir, _scenario_dir

    monkeypatch.chdir(tmp_path)  # no ./scenarios or ./experiments here
    root = Path(__file__).resolve().parents[2]
    assert _scenario_dir(None) == root / "scenarios"
    assert _experiments_dir(None) == root / "experiments"
