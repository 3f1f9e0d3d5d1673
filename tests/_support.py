"""Helpers shared by the test suites (on pytest's ``pythonpath``: ``from _support import ...``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"


def require_tool(name: str, install_hint: str) -> str:
    """Path of the executable ``name``. Missing: a failure under ``CI=true`` (a test that skips
    in CI is not a passing test), a skip elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed ({install_hint})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


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
    cmd = [
        sys.executable, "-m", "locust", "-f", str(SCENARIOS / f"{scenario}.py"), "--headless",
        "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--only-summary",
        "--report-dir", str(report_dir), *args,
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout_s, cwd=tmp_path,
        env={**os.environ, **(env or {})},
    )
    return LocustRun(proc.returncode, proc.stdout + proc.stderr, report_dir)


class CoreProcess:
    """``catga-bench serve`` in a subprocess (start, kill -9, restart), logging to a file."""

    def __init__(self, transport: str, url: str, scenario: str, workdir: Path,
                 *extra: str, env: dict[str, str] | None = None) -> None:
        self.argv = [sys.executable, "-m", "catga_bench.cli", "serve", "--transport", transport,
                     f"--{transport}-url", url, "--scenario", str(SCENARIOS / f"{scenario}.py"),
                     "--scenarios", str(SCENARIOS), "--metrics-port", "0", *extra]
        self.log = workdir / f"serve-{transport}-{scenario}.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout_s: float = 20.0) -> CoreProcess:
        import time

        self.starts += 1
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         env=self.env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.output()}")
            if self.output().count("catga-bench serve: ready") >= self.starts:
                return self
            time.sleep(0.05)
        raise AssertionError(f"serve did not start in {timeout_s} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> CoreProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
