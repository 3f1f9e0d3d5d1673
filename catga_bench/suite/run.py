"""Running the release gate: each case is a real Locust run (a subprocess, see
:func:`~catga_bench.processes.locust.locust_command`) judged by the SLO gate of that run. Over a
broker each case gets a private broker (:class:`~catga_bench.processes.brokers.BrokerProcess`, a
free port, a temporary data directory) and its own ``catga-bench serve`` process;
``core_killed`` kills that process with SIGKILL mid-run and restarts it.

Each fault cell is a ``python -m catga_bench.chaos run`` subprocess of a shipped experiment
(``experiments/<fault>.yaml``); cells run in waves, each in a worker thread.

Seeded defects (``CATGA_BENCH_DEFECTS``, :mod:`catga_bench.targets.defects`) are inherited by every
subprocess: that is how the tests prove each defect makes its case fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from catga_bench.processes.coreproc import CoreProcess, CoreStartError
from catga_bench.processes.locust import locust_command, transport_options
from catga_bench.suite.baseline import (
    STEP,
    Baseline,
    case_folder,
    compare_case,
    judged,
    worst,
)
from catga_bench.suite.cases import Case, Fault
from catga_bench.suite.judging import (
    CaseJudgement,
    CaseResult,
    case_result,
    judge_case,
    judge_fault_cell,
)
from catga_bench.suite.plan import schedule_faults
from catga_bench.suite.printing import Progress

#: seconds a case's Locust run may take beyond its own length before it counts as hung
LOCUST_GRACE_S = 240
#: seconds a fault cell's chaos run may take (environment up, load, rollbacks, teardown)
FAULT_TIMEOUT_S = 300


def _tail(text: str, n: int = 3) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) if lines else "(no output)"


# --------------------------------------------------------------------------- cases
def case_command(case: Case, transport: str, seconds: int, scenarios: Path, report_dir: Path,
                 broker_url: str | None = None) -> list[str]:
    """The Locust run of one case: the case's own options, then, over a broker, the
    generator's transport options."""
    users = case.users if transport == "embedded" else case.remote_users
    remote: list[str] = []
    if transport != "embedded":
        assert broker_url is not None
        remote = transport_options(transport, broker_url)
    return locust_command(scenarios / f"{case.scenario}.py", users=users, run_time_s=seconds,
                          report_dir=report_dir, extra=[*case.args, *remote])


class _CaseCore:
    """A case's ``catga-bench serve`` over a broker and, for a case with ``kill_at``, the
    thread that kills it -9 mid-run and restarts it."""

    def __init__(self, case: Case, transport: str, profile: str, broker_url: str,
                 scenarios: Path, report_dir: Path) -> None:
        extra = ("--ack-wait-s", "2") if case.kill_at else ()
        self.serve = CoreProcess(transport, broker_url, report_dir / "serve.log",
                                 ["--scenarios", str(scenarios), *extra])
        self.kills = bool(case.kill_at)
        self.kill_at = case.kill_at[profile] if case.kill_at else 0.0
        self.down_s = case.down_s
        self.errors: list[str] = []
        self._chaos: threading.Thread | None = None

    def start(self) -> None:
        """Start the core (raises :class:`CoreStartError`), then the kill thread if any."""
        self.serve.start()
        if self.kills:
            self._chaos = threading.Thread(target=self._kill_and_restart, daemon=True)
            self._chaos.start()

    def _kill_and_restart(self) -> None:
        time.sleep(self.kill_at)
        self.serve.kill()  # kill -9 mid-run: messages in progress neither acked nor reported
        time.sleep(self.down_s)
        try:
            self.serve.start()
        except CoreStartError as exc:
            self.errors.append(f"the core did not restart: {exc}")

    def stop(self) -> None:
        if self._chaos is not None:
            self._chaos.join(30)
        self.serve.stop()

    def problems(self) -> list[str]:
        """What went wrong with the kill: it did not restart, or it was never killed."""
        if self.errors:
            return list(self.errors)
        if self.kills and self.serve.starts < 2:
            return ["the core was never killed"]
        return []


def _run_locust(cmd: list[str], report_dir: Path, timeout_s: int) -> tuple[int | None, str]:
    """Run Locust in ``report_dir`` (output in ``locust.log``); its exit code (None: it did not
    finish in time) and its output."""
    log_path = report_dir / "locust.log"
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=report_dir,
                                  env=dict(os.environ), timeout=timeout_s)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        code = None
    output = log_path.read_text(errors="replace") if log_path.exists() else ""
    return code, output


def run_case(case: Case, transport: str, profile: str, scenarios: Path, out_dir: Path,
             broker_url: str | None = None, report_dir: Path | None = None) -> CaseResult:
    """Run one case (a Locust subprocess; over a broker with its own serve process); its
    reports go to ``report_dir`` (default ``out_dir/<case>-<transport>``)."""
    seconds = case.seconds[profile]
    report_dir = report_dir or out_dir / case_folder(case.name, transport)
    report_dir.mkdir(parents=True, exist_ok=True)
    cmd = case_command(case, transport, seconds, scenarios, report_dir, broker_url)
    t0 = time.monotonic()

    def result(j: CaseJudgement) -> CaseResult:
        return case_result(case.name, transport, seconds, round(time.monotonic() - t0, 1),
                           str(report_dir), j)

    core: _CaseCore | None = None
    if transport != "embedded":
        assert broker_url is not None
        core = _CaseCore(case, transport, profile, broker_url, scenarios, report_dir)
        try:
            core.start()
        except CoreStartError as exc:
            return result(CaseJudgement("ERROR", None, f"the core did not start: {exc}"))
    try:
        code, output = _run_locust(cmd, report_dir, seconds + LOCUST_GRACE_S)
    finally:
        if core is not None:
            core.stop()
    report_path = report_dir / "report.json"
    report = None
    if code is not None and report_path.exists():
        report = json.loads(report_path.read_text())
    problems = core.problems() if core is not None else []
    return result(judge_case(code, report, _tail(output), timeout_s=seconds + LOCUST_GRACE_S,
                             problems=problems))


def _run_isolated(case: Case, transport: str, profile: str, scenarios: Path,
                  out_dir: Path, report_dir: Path | None = None) -> CaseResult:
    """Run one case; over a broker, on a private broker of its own (fresh streams and
    consumers: a durable consumer left by an earlier case cannot change this one's ack wait)."""
    if transport == "embedded":
        return run_case(case, transport, profile, scenarios, out_dir, report_dir=report_dir)
    from catga_bench.processes.brokers import BrokerProcess, BrokerStartError

    try:
        broker = BrokerProcess(transport)  # type: ignore[arg-type]
        broker.start()
    except BrokerStartError as exc:
        return CaseResult(case.name, transport, "ERROR", None,
                          f"the {transport} broker did not start: {exc}",
                          case.seconds[profile], 0.0, "")
    try:
        return run_case(case, transport, profile, scenarios, out_dir, broker.url, report_dir)
    finally:
        broker.stop()
        broker.cleanup()


def run_cases(runs: list[tuple[Case, str]], profile: str, scenarios: Path, out_dir: Path,
              progress: Progress, repeat: int = 1,
              baseline: Baseline | None = None) -> list[CaseResult]:
    """Run the (case, transport) pairs one after another, numbered from 1; their results.
    With ``repeat`` > 1 or a ``baseline``, each case runs ``repeat`` times into
    ``<case>-<transport>/run-K/`` and, with a baseline, is compared with its runs there
    (:mod:`catga_bench.suite.baseline`)."""
    results: list[CaseResult] = []
    for index, (case, transport) in enumerate(runs, 1):
        progress.start(index, case.name, transport, case.seconds[profile])
        if repeat == 1 and baseline is None:
            r = _run_isolated(case, transport, profile, scenarios, out_dir)
        else:
            r = _run_repeated(case, transport, profile, scenarios, out_dir, repeat, baseline,
                              lambda k, one, i=index: progress.run(i, k, one))
        results.append(r)
        progress.done(index, case.name, transport, r)
    return results


def _run_repeated(case: Case, transport: str, profile: str, scenarios: Path, out_dir: Path,
                  repeat: int, baseline: Baseline | None,
                  each: Callable[[int, CaseResult], None]) -> CaseResult:
    """A case run ``repeat`` times (then, while its comparison with the baseline is
    inconclusive, 2 more at a time up to the baseline's ``max_runs``); its row: the worst run's,
    with the comparison."""
    case_dir = out_dir / case_folder(case.name, transport)
    runs: list[CaseResult] = []

    def more(n: int) -> None:
        for _ in range(n):
            k = len(runs) + 1
            runs.append(_run_isolated(case, transport, profile, scenarios, out_dir,
                                      case_dir / f"run-{k}"))
            each(k, runs[-1])

    def row() -> CaseResult:
        return replace(worst(runs), report_dir=str(case_dir),
                       wall_s=round(sum(r.wall_s for r in runs), 1))

    more(repeat)
    if baseline is None or any(r.status == "ERROR" for r in runs):
        return row()

    def reports() -> list[Path]:
        return [Path(r.report_dir) / "report.json" for r in runs]

    comparison = compare_case(baseline, case.name, transport, reports())
    while comparison.outcome == "inconclusive" and len(runs) < baseline.max_runs:
        more(min(STEP, baseline.max_runs - len(runs)))
        if any(r.status == "ERROR" for r in runs):
            return row()
        comparison = compare_case(baseline, case.name, transport, reports())
    return judged(row(), comparison, len(runs), case_dir)


# --------------------------------------------------------------------------- fault matrix
def fault_seconds(fault: Fault, profile: str, experiments: Path | None = None) -> int:
    """The load run's length: the profile's ``duration`` var, else the file's
    ``configuration.duration``, else 0."""
    raw: Any = fault.vars.get(profile, {}).get("duration")
    if raw is None and experiments is not None:
        try:
            import yaml

            doc = yaml.safe_load((experiments / f"{fault.name}.yaml").read_text())
            raw = ((doc or {}).get("configuration") or {}).get("duration")
        except Exception:
            raw = None
    try:
        return int(float(raw)) if raw is not None else 0
    except (TypeError, ValueError):
        return 0


def fault_command(fault: Fault, transport: str, profile: str, experiments: Path,
                  cell_dir: Path) -> list[str]:
    """The chaos run of one cell."""
    overrides = [x for k, v in fault.vars.get(profile, {}).items() for x in ("--var", f"{k}={v}")]
    return [sys.executable, "-m", "catga_bench.chaos", "run",
            str(experiments / f"{fault.name}.yaml"), "--var", f"broker={transport}",
            *overrides, "--journal", str(cell_dir / "journal.json"),
            "--workdir", str(cell_dir / "work")]


#: chaos runs in progress (stopped by run_fault_matrix() on Ctrl-C: cells run in worker
#: threads, which do not see it)
_LIVE: set[subprocess.Popen[bytes]] = set()


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the chaos run (it plays its rollbacks and tears its environment down), then
    SIGKILL its process group if it is still there after 30 s."""
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        proc.wait()


def run_fault_cell(fault: Fault, transport: str, profile: str, experiments: Path,
                   out_dir: Path, timeout_s: float = FAULT_TIMEOUT_S) -> CaseResult:
    """Run one matrix cell (a ``catga_bench.chaos run`` subprocess) and judge it."""
    cell_dir = out_dir / f"fault-{fault.name}-{transport}"
    cell_dir.mkdir(parents=True, exist_ok=True)
    journal_path = cell_dir / "journal.json"
    journal_path.unlink(missing_ok=True)  # never judge an earlier run's journal
    log_path = cell_dir / "chaos.log"
    cmd = fault_command(fault, transport, profile, experiments, cell_dir)
    t0 = time.monotonic()
    code: int | None
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cell_dir,
                                env=dict(os.environ), start_new_session=True)
        _LIVE.add(proc)
        try:
            code = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            code = None
        except BaseException:  # Ctrl-C: let the chaos run roll back before leaving
            _stop_group(proc)
            raise
        finally:
            _LIVE.discard(proc)
    output = log_path.read_text(errors="replace") if log_path.exists() else ""
    journal: dict[str, Any] | None = None
    if journal_path.exists():
        try:
            doc = json.loads(journal_path.read_text())
            journal = doc if isinstance(doc, dict) else None
        except (OSError, ValueError):
            journal = None
    tail = _tail(output)
    if code is None:
        tail = f"did not finish within {timeout_s:g} s: {tail}"
    j = judge_fault_cell(code, journal, tail)
    return CaseResult(f"fault:{fault.name}", transport, j.status, code, j.verdict,
                      fault_seconds(fault, profile, experiments),
                      round(time.monotonic() - t0, 1), str(cell_dir), j.failed_targets,
                      j.figures, j.slo)


def run_fault_matrix(fault_runs: list[tuple[Fault, str]], profile: str, experiments: Path,
                     out_dir: Path, jobs: int, progress: Progress,
                     first_index: int = 1) -> list[CaseResult]:
    """Run the fault cells in the waves of :func:`~catga_bench.suite.plan.schedule_faults`,
    each cell in a worker thread, numbered from ``first_index``; their results in plan order,
    whatever order they finished in."""
    results: dict[int, CaseResult] = {}
    lock = threading.Lock()

    def _cell(i: int, fault: Fault, transport: str) -> None:
        index, name = first_index + i, f"fault:{fault.name}"
        progress.start(index, name, transport, fault_seconds(fault, profile, experiments))
        r = run_fault_cell(fault, transport, profile, experiments, out_dir)
        with lock:
            results[i] = r
            progress.done(index, name, transport, r)

    try:
        for wave in schedule_faults(fault_runs, jobs,
                                    lambda f: fault_seconds(f, profile, experiments)):
            threads = [threading.Thread(target=_cell, args=cell, daemon=True) for cell in wave]
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
    except KeyboardInterrupt:  # worker threads do not see Ctrl-C: stop their chaos runs
        for proc in list(_LIVE):
            _stop_group(proc)
        raise
    return [results[i] for i in sorted(results)]
