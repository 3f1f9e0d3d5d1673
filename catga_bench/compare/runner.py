"""Command sides: a side given as a command line that produces one run report per call.

The harness runs the command with ``--report-dir RUN_DIR`` appended, or with every
``{report_dir}`` placeholder replaced when the command has one, e.g.
``"locust -f scenarios/service_time.py --headless -u 4 -r 4 -t 8s --only-summary"``. A run's
exit code 0 or 1 (SLO met or missed) gives a sample; 2 is a usage error of the command, 3 or a
missing report.json an environment failure.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from catga_bench.compare.samples import RunSample, load_run
from catga_bench.errors import ConfigError
from catga_bench.workload.seeds import FAIL_RATIO_VAR, SLOWDOWN_VAR

PLACEHOLDER = "{report_dir}"
#: seeded-change variables a command side never inherits from the caller (a side names its own)
SEED_VARS = (SLOWDOWN_VAR, FAIL_RATIO_VAR)


class RunFailed(RuntimeError):
    """A command run gave no verdict (exit 3, no report, timeout): an environment failure."""


@dataclass(frozen=True)
class CommandSide:
    """``argv`` (already split) and the extra environment of the side's runs."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        seeds = " ".join(f"{k}={v}" for k, v in self.env.items())
        return (seeds + " " if seeds else "") + shlex.join(self.argv)

    def command(self, run_dir: Path) -> list[str]:
        """The argv of one run writing into ``run_dir``."""
        if any(PLACEHOLDER in a for a in self.argv):
            return [a.replace(PLACEHOLDER, str(run_dir)) for a in self.argv]
        return [*self.argv, "--report-dir", str(run_dir)]


def parse_side(text: str, name: str) -> Path | CommandSide:
    """A side: an existing folder of run reports, else a command line (shlex-split).

    Raises:
        ConfigError: an empty or unparsable command, or a single word that is neither a folder
            nor a program (``no such folder``), or a program that is not found.
    """
    if Path(text).is_dir():
        return Path(text)
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"{name}: neither a folder nor a command line ({exc})") from None
    if not argv:
        raise ConfigError(f"{name}: empty; give a folder of run reports or a command line")
    program = argv[0]
    if shutil.which(program) is None and not Path(program).is_file():
        if len(argv) == 1:
            raise ConfigError(f"{name}: no such folder: {text}")
        raise ConfigError(f"{name}: command not found: {program}")
    return CommandSide(name, tuple(argv))


def run_once(side: CommandSide, run_dir: Path, timeout_s: float) -> tuple[RunSample, float]:
    """Run ``side`` once into ``run_dir``; returns its sample and wall seconds.

    Raises:
        ConfigError: the command exited 2 (its own usage error; its last output line quoted).
        RunFailed: exit 3 or another code without a report, no report.json, or a timeout.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "output.log"
    env = {k: v for k, v in os.environ.items() if k not in SEED_VARS} | side.env
    started = time.monotonic()
    try:
        with log.open("wb") as out:
            rc = subprocess.run(side.command(run_dir), env=env, stdout=out,
                                stderr=subprocess.STDOUT, timeout=timeout_s, check=False).returncode
    except subprocess.TimeoutExpired:
        raise RunFailed(f"{side.name}: a run took over {timeout_s:g} s (see {log})") from None
    except OSError as exc:
        raise RunFailed(f"{side.name}: cannot start the command: {exc}") from None
    wall = time.monotonic() - started
    report = run_dir / "report.json"
    if rc == 2:
        raise ConfigError(f"{side.name}: the command's usage error (exit 2): {_last_line(log)}")
    if rc == 3 or not report.is_file():
        raise RunFailed(f"{side.name}: a run gave no verdict (exit {rc}"
                        f"{'' if report.is_file() else ', no report.json'}): {_last_line(log)}")
    sample = load_run(report)
    if sample is None:
        raise RunFailed(f"{side.name}: {report} is a comparison, not a run")
    return sample, wall


def _last_line(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return f"see {log}"
    return (lines[-1][:200] if lines else "no output") + f" (see {log})"
