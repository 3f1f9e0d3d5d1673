"""``catga-bench init``: the files it writes, that it never overwrites without --force, and that
each file is valid for the reader that will use it (our own loaders; ``bash -n`` for the CI
script). Running the scenario and the CI script: tests/integration/test_wheel.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from _support import missing

from catga_bench.chaos.env import resolve_scenario
from catga_bench.chaos.model import load_experiment
from catga_bench.cli import COMMANDS
from catga_bench.scaffold import FILES, main
from catga_bench.workload.asyncapi import load_spec
from catga_bench.workload.loader import load_scenarios
from catga_bench.workload.slo import load_slo_file, parse_targets

ROOT = Path(__file__).resolve().parents[2]
WRITTEN = ("perf/scenario.py", "perf/service.asyncapi.yaml", "perf/slo.toml",
           "perf/experiment.yaml", "ci/catga-bench.sh", ".github/workflows/catga-bench.yml")


@pytest.fixture
def repo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A scaffolded repository (``catga-bench init DIR``)."""
    target = tmp_path / "team-repo"
    assert main([str(target)]) == 0
    capsys.readouterr()
    return target


def test_init_is_a_command() -> None:
    assert COMMANDS["init"][0] == "catga_bench.scaffold"


def test_writes_every_file_and_says_what_next(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "new"
    assert main([str(target)]) == 0
    out = capsys.readouterr().out
    assert tuple(f.path for f in FILES) == WRITTEN
    for rel in WRITTEN:
        assert (target / rel).is_file(), rel
        assert rel in out
    assert os.access(target / "ci" / "catga-bench.sh", os.X_OK)
    assert "next steps" in out and "locust -f perf/scenario.py" in out
    assert "--sut asyncapi --sut-spec perf/service.asyncapi.yaml" in out


def test_default_dir_is_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([]) == 0
    assert (tmp_path / "perf" / "scenario.py").is_file()


def test_refuses_to_overwrite_without_force(repo: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    slo = repo / "perf" / "slo.toml"
    slo.write_text("p99_ms = 5\n")
    (repo / "perf" / "scenario.py").unlink()  # one missing: still nothing written
    assert main([str(repo)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err == (f"catga-bench init: error: {repo / 'perf' / 'service.asyncapi.yaml'} "
                   "exists (and 4 more); pass --force to overwrite\n")
    assert slo.read_text() == "p99_ms = 5\n"
    assert not (repo / "perf" / "scenario.py").exists()
    assert main([str(repo), "--force"]) == 0
    assert slo.read_text() != "p99_ms = 5\n"
    assert (repo / "perf" / "scenario.py").is_file()


def test_a_file_as_dir_is_a_usage_error(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("")
    assert main([str(tmp_path / "f")]) == 2
    assert capsys.readouterr().err == \
        f"catga-bench init: error: DIR: {tmp_path / 'f'} is not a directory\n"


def test_the_scenario_loads_and_drives_the_embedded_core(repo: Path) -> None:
    [scenario] = load_scenarios([repo / "perf" / "scenario.py"]).values()
    assert scenario.name == "service_load"
    assert (scenario.rate, scenario.qos, scenario.sut) == (500, 1, "core")
    assert [s.name for s in scenario.streams] == ["OrderPlaced"]
    assert scenario.slo.p99_ms == 100 and scenario.slo.max_lost == 0


def test_the_spec_template_loads_with_our_asyncapi_reader(repo: Path) -> None:
    spec = load_spec(repo / "perf" / "service.asyncapi.yaml")
    assert spec.input_operation().channel.address == "orders.placed"
    assert [o.channel.address for o in spec.output_operations()] == ["orders.confirmed"]
    assert spec.input_broker() == "nats"
    assert spec.bench.qos == 1 and spec.bench.process is None


def test_the_experiment_is_valid_and_finds_the_scenario(repo: Path) -> None:
    path = repo / "perf" / "experiment.yaml"
    exp = load_experiment(path)
    assert exp.environment.broker == "nats"
    assert exp.environment.core is not None and exp.environment.load is not None
    for ref in (exp.environment.core.scenario, exp.environment.load.scenario):
        assert resolve_scenario(ref, path.parent) == repo / "perf" / "scenario.py"
    assert [a.type for a in exp.method] == ["toxic_add", "sleep", "toxic_remove"]


def test_the_slo_file_is_what_slo_file_reads(repo: Path) -> None:
    data = load_slo_file(repo / "perf" / "slo.toml")
    targets = parse_targets(data)
    assert (targets.p99_ms, targets.p999_ms, targets.max_error_ratio, targets.max_lost) == \
        (100, 250, 0.0, 0)


def test_the_workflow_runs_the_script_and_uploads_the_reports(repo: Path) -> None:
    doc = yaml.safe_load((repo / ".github" / "workflows" / "catga-bench.yml").read_text())
    [job] = doc["jobs"].values()
    runs = [s.get("run", "") for s in job["steps"]]
    assert "bash ci/catga-bench.sh" in runs
    assert any("pip install" in r for r in runs)
    [upload] = [s for s in job["steps"] if str(s.get("uses", "")).startswith(
        "actions/upload-artifact@")]
    assert upload["if"] == "always()" and "reports/" in upload["with"]["path"]


def test_the_ci_script_is_valid_bash_and_gates_runs_then_compares(repo: Path) -> None:
    script = repo / "ci" / "catga-bench.sh"
    bash = shutil.which("bash")
    assert bash is not None
    proc = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = script.read_text()
    assert '--slo-file "$SLO_FILE" --report-dir "$REPORTS/candidate/run-$k"' in text
    assert 'compare "$BASELINE" "$REPORTS/candidate"' in text
    assert '--report-dir "$REPORTS/compare"' in text


def test_the_scenario_template_is_lint_clean(repo: Path) -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        missing("ruff is not installed (pip install ruff; a dev dependency)")
    proc = subprocess.run([str(ruff), "check", "--no-cache", "--config",
                           str(ROOT / "pyproject.toml"), str(repo / "perf" / "scenario.py")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
