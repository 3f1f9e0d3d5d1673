"""Helpers shared by the test suites (on pytest's ``pythonpath``: ``from _support import ...``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from catga_bench.processes.coreproc import CoreProcess as _CoreProcess
from catga_bench.processes.coreproc import CoreStartError
from catga_bench.processes.locust import locust_command

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"


def require_tool(name: str, install_hint: str) -> str:
    """Path of the executable ``name``. Missing: a failure under ``CI=true`` (a test that skips
    in CI is not a passing test), a skip elsewhere."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed ({install_hint})")
    return path  # type: ignore[return-value]


def missing(message: str) -> None:
    """A tool, package or service a test needs is missing: a failure under ``CI=true``, a skip
    elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocustRun:
    """A finished Locust run: exit code, combined output and the report (if written)."""

    code: int
    output: str
    report_dir: Path

    @property
    def report(self) -> dict[str, Any]:
        path = self.report_dir / "report.json"
        assert path.exists(), f"no report.json written; output:\n{self.output[-3000:]}"
        return json.loads(path.read_text())

    def slo(self, name: str) -> dict[str, Any]:
        rows = [r for r in self.report["slo"] if r["name"] == name]
        assert rows, f"no SLO row {name!r} in {[r['name'] for r in self.report['slo']]}"
        return rows[0]


def run_locust(scenario: str, tmp_path: Path, *args: str, seconds: int = 10, users: int = 20,
               env: dict[str, str] | None = None, timeout_s: int = 180) -> LocustRun:
    """Run ``locust -f scenarios/<scenario>.py --headless`` and return what happened."""
    report_dir = tmp_path / f"report-{scenario}"
    cmd = locust_command(SCENARIOS / f"{scenario}.py", users=users, run_time_s=seconds,
                         report_dir=report_dir, extra=args)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout_s, cwd=tmp_path,
        env={**os.environ, **(env or {})},
    )
    return LocustRun(proc.returncode, proc.stdout + proc.stderr, report_dir)


class CoreProcess(_CoreProcess):
    """``catga-bench serve`` for a test (serving ``scenario``, log in ``workdir``); a core that
    does not start fails the test. A context manager: enter starts it, exit stops it."""

    def __init__(self, transport: str, url: str, scenario: str, workdir: Path,
                 *extra: str, env: dict[str, str] | None = None) -> None:
        super().__init__(transport, url, workdir / f"serve-{transport}-{scenario}.log",
                         ["--scenario", str(SCENARIOS / f"{scenario}.py"),
                          "--scenarios", str(SCENARIOS), *extra], env=env)

    def start(self, timeout_s: float = 20.0) -> CoreProcess:  # type: ignore[override]
        try:
            super().start(timeout_s)
        except CoreStartError as exc:
            raise AssertionError(str(exc).replace("catga-bench serve exited", "serve exited")
                                 ) from None
        return self

    def __enter__(self) -> CoreProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class CleanGate:
    """One ``catga-bench gate --profile ci --only CLEAN_CASES`` run of the clean build: its
    exit code, its --json document, and each case's report."""

    code: int
    doc: dict[str, Any]

    def row(self, case: str) -> dict[str, Any]:
        rows = [c for c in self.doc["cases"]
                if c["case"] == case and c["transport"] == "embedded"]
        assert len(rows) == 1, self.doc["cases"]
        return rows[0]

    def report_dir(self, case: str) -> Path:
        return Path(self.row(case)["report_dir"])

    def report(self, case: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads((self.report_dir(case) / "report.json").read_text())
        return out


#: (defect, the case that must catch it, the target it must miss): tests/chaos/test_gate_defects
DEFECT_CASES = [
    ("block_loop", "high_fanout", "p99_latency"),
    ("breaker_disabled", "failing_handlers", "breaker_opens_within"),
    ("unbounded_queue", "overload", "min_rejected"),
    ("dedup_off", "exactly_once", "duplicates"),
    ("ack_before_handling", "failing_handlers", "lost"),
]


def run_gates(tmp: Path, gates: list[tuple[str, list[str], str | None]],
              parallel: int = 2) -> dict[str, tuple[int, dict[str, Any]]]:
    """Run ``catga-bench gate --profile ci --only CASES`` once per ``(name, cases, defect)``,
    each its own process with ``CATGA_BENCH_DEFECTS`` set to ``defect`` (None: the clean
    build), ``parallel`` at a time in the order given (longest first). Returns name -> (exit
    code, --json document)."""
    env = {k: v for k, v in os.environ.items() if k != "CATGA_BENCH_DEFECTS"}
    running: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    done: dict[str, tuple[int, dict[str, Any]]] = {}

    def reap(entry: tuple[str, subprocess.Popen[bytes], Path]) -> None:
        name, proc, out = entry
        code = proc.wait(timeout=400)
        assert out.exists(), f"{name}: gate exited {code} without writing {out}: " + \
            (out.parent / "gate.log").read_text()[-2000:]
        done[name] = (code, json.loads(out.read_text()))

    for name, cases, defect in gates:
        if len(running) == parallel:
            # the first to finish frees its slot
            while all(p.poll() is None for _, p, _ in running):
                time.sleep(0.2)
            finished = next(e for e in running if e[1].poll() is not None)
            running.remove(finished)
            reap(finished)
        out = tmp / name / "gate.json"
        out.parent.mkdir(parents=True)
        with open(out.parent / "gate.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "catga_bench.cli", "gate", "--profile", "ci", "--only",
                 ",".join(cases), "--json", str(out), "--report-dir", str(out.parent / "reports")],
                stdout=log, stderr=subprocess.STDOUT,
                env=({**env, "CATGA_REPORT_FORMATS": "json,md,html"} if defect is None
                     else {**env, "CATGA_BENCH_DEFECTS": defect}))
        running.append((name, proc, out))
    for entry in running:
        reap(entry)
    return done
