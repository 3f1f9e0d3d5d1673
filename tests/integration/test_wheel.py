"""catga-bench as a new user gets it: the wheel built from this checkout, installed with its
dependencies into a FRESH virtual environment outside the checkout, its commands run from a
folder outside the checkout (issue 13, part 6):

- ``catga-bench scenarios`` lists the scenarios shipped in the wheel;
- ``catga-bench gate --profile ci --only service_time`` runs and passes;
- ``catga-bench dashboards build --check`` and ``alerts build --check`` find the shipped files;
- ``catga-bench init DIR``, then its CI script (one 5 s run, no baseline) exits 0; that run is
  ``locust -f DIR/perf/scenario.py --slo-file DIR/perf/slo.toml`` against the embedded core, and
  its report shows the SLO file's targets met.

The venv has no system site-packages, so the checkout's editable install (and PYTHONPATH, which
is dropped) cannot shadow the wheel: the test checks ``catga_bench.__file__`` lies in the venv.
The build runs on a copy of the checkout (setuptools writes build/ and *.egg-info beside the
sources, and a stale build/ would leak into the wheel). pip fetches the dependencies from its
index (its cache makes a second run quicker).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from catga_bench.bundled import BUNDLED

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # pip may download the dependencies

ROOT = Path(__file__).resolve().parents[2]
#: not part of a build: history, outputs, caches, the test suite
IGNORE = shutil.ignore_patterns(".git", "reports", "node_modules", "build", "dist", "*.egg-info",
                                "__pycache__", ".pytest_cache", ".ruff_cache", "tests", "*.whl")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float
         ) -> subprocess.CompletedProcess[str]:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    print(f"$ {' '.join(cmd)}  -> exit {proc.returncode} in {time.monotonic() - t0:.1f} s")
    return proc


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, (proc.args, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.stdout


def _report(path: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(path.read_text())
    return report


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no system site-packages) with the wheel of this checkout installed."""
    base = tmp_path_factory.mktemp("wheel")
    src, dist, env_dir = base / "src", base / "dist", base / "venv"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    pip = [sys.executable, "-m", "pip"]
    _ok(_run([*pip, "wheel", "--no-deps", "-q", "-w", str(dist), str(src)], base, env, 300))
    [wheel] = dist.glob("catga_bench-*.whl")
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], base, env, 60))
    # pip of this interpreter installs into the venv (--python): no pip bootstrap in the venv
    _ok(_run([*pip, "--python", str(env_dir / "bin" / "python"), "install", "-q",
              "--no-compile", str(wheel)], base, env, 600))
    return env_dir


@pytest.fixture
def user_env(venv: Path) -> dict[str, str]:
    """The environment of a user whose venv is active: its bin/ first on PATH, no
    PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


def test_the_installed_wheel_gates_a_release_outside_the_checkout(
        venv: Path, user_env: dict[str, str], tmp_path: Path) -> None:
    t0 = time.monotonic()
    work = tmp_path / "elsewhere"
    work.mkdir()
    assert not work.resolve().is_relative_to(ROOT)
    python, bench = str(venv / "bin" / "python"), str(venv / "bin" / "catga-bench")

    # the wheel, not the checkout: both packages and the shipped folders come from the venv
    out = _ok(_run([python, "-c", "import catga_bench, core; from catga_bench.bundled import "
                    "resource_dir as r; print(catga_bench.__file__); print(core.__file__); "
                    f"print(*(r(n) for n in {BUNDLED!r}), sep='\\n')"], work, user_env, 60))
    shipped = venv.resolve() / "lib"
    lines = out.split()
    assert len(lines) == 2 + len(BUNDLED)
    for line in lines:
        assert Path(line).is_relative_to(shipped), line
    assert all(line.endswith(f"catga_bench/_bundled/{n}") for line, n in zip(lines[2:], BUNDLED,
                                                                             strict=True))

    out = _ok(_run([bench, "scenarios"], work, user_env, 60))
    assert "catga_bench/_bundled/scenarios/high_fanout.py" in out
    assert "catga_bench/_bundled/scenarios/exactly_once.py" in out

    gate_dir = work / "gate"
    proc = _run([bench, "gate", "--profile", "ci", "--only", "service_time",
                 "--report-dir", str(gate_dir)], work, user_env, 180)
    case_report = gate_dir / "service_time-embedded" / "report.json"
    # the case's own verdict, unwrapped (the gate's table wraps it), in a str: pytest shortens
    # a tuple's repr to 240 characters, and the rerun filter reads the message
    report = _report(case_report) if case_report.exists() else {"verdict": "no report"}
    assert proc.returncode == 0, (
        f"{report['verdict']}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    assert report["passed"] is True and report["scenario"] == "service_time"

    out = _ok(_run([bench, "dashboards", "build", "--check"], work, user_env, 60))
    assert "catga_bench/_bundled/dashboards: dashboards up to date" in out
    out = _ok(_run([bench, "alerts", "build", "--check"], work, user_env, 60))
    assert "catga_bench/_bundled/alerts: alert rules up to date" in out

    team = work / "team-repo"
    out = _ok(_run([bench, "init", str(team)], work, user_env, 60))
    assert "perf/scenario.py" in out and "ci/catga-bench.sh" in out

    # the CI script's one run IS `locust -f perf/scenario.py ... --slo-file perf/slo.toml`
    # against the embedded core (5 s: a 3 s run's steady window is too short to judge the
    # generator's rate on a busy 2-core machine)
    script_env = {**user_env, "RUNS": "1", "DURATION": "5", "PYTHON": python}
    out = _ok(_run(["bash", str(team / "ci" / "catga-bench.sh")], work, script_env, 120))
    assert "run 1 exit 0" in out and "no baseline at perf-baseline/" in out
    assert out.rstrip().endswith("== catga-bench: passed")
    report = _report(team / "reports" / "candidate" / "run-1" / "report.json")
    assert report["passed"] is True and report["scenario"] == "service_load"
    assert report["sut"]["kind"] == "core" and report["transport"] == "embedded"
    assert report["slo"] and all(row["passed"] for row in report["slo"])  # perf/slo.toml's
    assert {row["name"] for row in report["slo"]} >= {"p99_latency", "p999_latency"}
    assert not (team / "perf-baseline").exists()  # not asked to store one
    print(f"commands after the install: {time.monotonic() - t0:.1f} s")
