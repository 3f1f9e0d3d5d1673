"""``catga-bench gate``: the release-gating chaos suite, its options and its exit code.

Every case is a real Locust run (``python -m locust -f scenarios/X.py --headless ...`` in a
subprocess) judged by the SLO gate of that run: its exit code and its ``report.json``. The suite
passes only when every case passes. The fault matrix (``--faults LIST|all``) runs shipped chaos
experiments (``experiments/<fault>.yaml``, ``python -m catga_bench.chaos run``) once per broker
transport chosen, each cell judged by the experiment's exit code and journal
(:func:`~catga_bench.suite.judging.judge_fault_cell`).

The tables are :mod:`catga_bench.suite.cases`; what runs, :mod:`catga_bench.suite.plan`; the
running, :mod:`catga_bench.suite.run`; the judging, :mod:`catga_bench.suite.judging`; the
output, :mod:`catga_bench.suite.printing`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catga_bench.bundled import local_or_shipped
from catga_bench.compare import CompareConfig
from catga_bench.compare.history import check_label, default_label, store_release
from catga_bench.errors import EXIT_ENVIRONMENT, EXIT_FAIL, EXIT_PASS, EXIT_USAGE, ConfigError
from catga_bench.suite import run
from catga_bench.suite.baseline import DEFAULT_RUNS, Baseline, case_folder
from catga_bench.suite.baseline import check as check_baseline
from catga_bench.suite.baseline import resolve as resolve_baseline
from catga_bench.suite.cases import (
    CASE_NAMES,
    CASES,
    FAULT_NAMES,
    FAULTS,
    PROFILES,
    TRANSPORTS,
    Case,
    Fault,
)
from catga_bench.suite.judging import CaseResult
from catga_bench.suite.plan import plan, plan_faults, schedule_faults
from catga_bench.suite.printing import Progress, print_header, print_outcome, print_table
from catga_bench.targets.defects import ENV_VAR, defects_from_env, describe

EPILOG = f"""\
cases (each a real Locust run judged by the scenario's SLO gate):
{chr(10).join(f"  {c.name:<17} {c.what} [{', '.join(c.transports)}]" for c in CASES)}

profiles: ci runs each case 8-16 s (failing_handlers 16 s: its outage window needs >= 15 s);
release runs each 60 s.

over a broker (--transports nats,redis): a private nats-server / redis-server on a free port
is started per case (binaries from PATH), with its own `catga-bench serve` process;
the generator drives it with --transport X --X-url URL. core_killed runs only there.

fault matrix (--faults LIST|all): each fault is a shipped chaos experiment,
experiments/<fault>.yaml, run by `python -m catga_bench.chaos run` once per broker transport
in --transports (nats, redis; embedded is skipped) with --var broker=<transport>; each run
drives streams at QoS 0, 1 and 2 side by side, and a cell passes when the experiment completes
(steady state met before and after): QoS 1/2 lost 0, QoS 2 duplicates 0, QoS 0 loss reported,
and the fault's own target:
{chr(10).join(f"  {f.name:<20} {f.what}" for f in FAULTS)}
--faults needs a broker transport (--transports nats,redis). Without --only, --faults runs
ONLY the fault matrix; with --only, the cases named run first, then the fault matrix.
profile ci shortens each experiment (--var duration=12-26 and shorter fault windows);
release runs the files' defaults.

seeded defects (tests of the gate only): the environment variable {ENV_VAR} (comma list) is
inherited by every subprocess and breaks the core on purpose; the suite must then fail:
{describe()}

against the last release (--baseline DIR): each case runs --runs times (default 5), every run
judged by its SLO as above, then its runs are compared with the baseline's runs of the same case
(DIR/<case>-<transport>/, an earlier gate's --report-dir or the latest release of a --history
folder) as `catga-bench compare` does: P99 and achieved rate by ratio of medians with a
bootstrap interval, a margin test (--margin, 3%) and Mann-Whitney that must agree; errors, lost
and duplicates as absolute limits. Regressed: the case FAILs (regression:<metric>); cannot tell
after --max-runs: ERROR (exit 3). --history DIR --release LABEL keeps this gate's case runs as
a release (`catga-bench trend DIR` finds change points over releases).

exit codes: 0 every case passed, 1 a case missed a target, 2 usage or configuration error,
            3 a case could not run (broker or core did not start, the generator could not
              offer the load, no report; a chaos run aborted, timed out or left no
              journal); 3 wins over 1
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="catga-bench gate",
        description="Run the release-gating chaos suite: every case is a real Locust run "
                    "judged by its SLO gate; exit 0 only when all pass.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=PROFILES, default="ci",
                   help="case durations: ci (short) or release (60 s). Default: %(default)s")
    p.add_argument("--transports", default="embedded", metavar="LIST",
                   help="comma list of embedded, nats, redis (default: %(default)s)")
    p.add_argument("--only", default=None, metavar="CASE[,CASE]",
                   help=f"run only these cases ({', '.join(CASE_NAMES)})")
    p.add_argument("--json", default=None, metavar="PATH", help="write the results as JSON")
    p.add_argument("--report-dir", default=None, metavar="DIR",
                   help="where each case's reports go, DIR/<case>-<transport>/ "
                        "(default: reports/gate-<time>/)")
    p.add_argument("--scenarios", default=None, metavar="DIR",
                   help="scenario directory (default: ./scenarios when it has the gate's "
                        "scenarios, else the ones shipped with catga-bench)")
    p.add_argument("--faults", default=None, metavar="LIST|all",
                   help="also run the fault matrix: these chaos experiments "
                        f"({', '.join(FAULT_NAMES)}) or all, once per broker transport; "
                        "without --only, ONLY the fault matrix runs (default: none)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="run up to N fault cells at once (each has its own broker, proxy and "
                        "core on free ports); cells whose targets are latencies "
                        f"({', '.join(f.name for f in FAULTS if f.exclusive)}) always run "
                        "alone. Default: %(default)s")
    p.add_argument("--baseline", default=None, metavar="DIR",
                   help="compare each case's runs with the last release's: an earlier gate's "
                        "--report-dir (run with --runs) or a --history folder (its latest "
                        "release); a regression fails the case (exit 1), cannot tell after "
                        "--max-runs is exit 3 (default: no comparison)")
    p.add_argument("--runs", type=int, default=None, metavar="N",
                   help=f"runs per case (default 1; {DEFAULT_RUNS} with --baseline)")
    p.add_argument("--max-runs", type=int, default=10, metavar="N",
                   help="with --baseline: while inconclusive, 2 more runs per case up to N "
                        "(default: %(default)s)")
    p.add_argument("--margin", type=float, default=None, metavar="RATIO",
                   help="with --baseline: allowed relative worsening in (0, 1) "
                        "(default 0.03 = 3%%)")
    p.add_argument("--history", default=None, metavar="DIR",
                   help="keep this gate's case runs as a release in DIR (a later gate's "
                        "--baseline DIR compares with it; catga-bench trend DIR)")
    p.add_argument("--release", default=None, metavar="LABEL",
                   help="the release label in --history (default: the UTC time)")
    p.add_argument("--experiments", default=None, metavar="DIR",
                   help="chaos experiment directory (default: ./experiments when it has the "
                        "gate's experiments, else the ones shipped with catga-bench)")
    return p


def _split(raw: str, allowed: tuple[str, ...], option: str) -> list[str]:
    items = [x.strip() for x in raw.split(",") if x.strip()]
    if not items:
        raise ConfigError(f"{option}: empty list; allowed: {', '.join(allowed)}")
    for x in items:
        if x not in allowed:
            raise ConfigError(f"{option}: unknown {x!r}; allowed: {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def _scenario_dir(raw: str | None) -> Path:
    if raw is not None:
        d = Path(raw)
        if not d.is_dir():
            raise ConfigError(f"--scenarios: no such directory: {d}")
        return d.resolve()
    try:
        return local_or_shipped("scenarios", marker="high_fanout.py")
    except FileNotFoundError as exc:
        raise ConfigError(f"--scenarios: {exc}; pass --scenarios DIR") from None


def _experiments_dir(raw: str | None) -> Path:
    if raw is not None:
        d = Path(raw)
        if not d.is_dir():
            raise ConfigError(f"--experiments: no such directory: {d}")
        return d.resolve()
    try:
        return local_or_shipped("experiments", marker=f"{FAULT_NAMES[0]}.yaml")
    except FileNotFoundError as exc:
        raise ConfigError(f"--experiments: {exc}; pass --experiments DIR") from None


def parse_faults(raw: str) -> list[str]:
    """``--faults``: a comma list of fault names, or ``all``; in the matrix's order."""
    items = _split(raw, (*FAULT_NAMES, "all"), "--faults")
    return [n for n in FAULT_NAMES if "all" in items or n in items]


@dataclass(frozen=True)
class _Gate:
    """What the options ask for, checked."""

    defects: frozenset[str]
    transports: list[str]
    faults: list[str] | None  # None: no --faults
    runs: list[tuple[Case, str]]
    fault_runs: list[tuple[Fault, str]]
    scenarios: Path
    experiments: Path
    repeat: int = 1
    baseline: Baseline | None = None


def _configure(args: argparse.Namespace) -> _Gate:
    """Check the options and plan the runs (raises :class:`ConfigError`)."""
    defects = defects_from_env()
    transports = _split(args.transports, TRANSPORTS, "--transports")
    only = _split(args.only, CASE_NAMES, "--only") if args.only is not None else None
    faults = parse_faults(args.faults) if args.faults is not None else None
    # --faults without --only: only the fault matrix
    runs = plan(only, transports) if faults is None or only is not None else []
    fault_runs = plan_faults(faults, transports) if faults is not None else []
    schedule_faults(fault_runs, args.jobs)  # checks --jobs
    scenarios = _scenario_dir(args.scenarios) if runs else Path()
    experiments = _experiments_dir(args.experiments) if fault_runs else Path()
    repeat = args.runs if args.runs is not None else DEFAULT_RUNS if args.baseline else 1
    if repeat < 1 or (args.baseline and repeat < 2):
        raise ConfigError(f"--runs: must be >= {2 if args.baseline else 1}"
                          f"{' with --baseline (a spread needs two runs)' if args.baseline else ''}"
                          f", got {repeat}")
    if args.max_runs < repeat:
        raise ConfigError(f"--max-runs: must be >= --runs ({repeat}), got {args.max_runs}")
    if args.margin is not None and not 0 < args.margin < 1:
        raise ConfigError(f"--margin: must be in (0, 1) (0.03 = 3%), got {args.margin:g}")
    if args.release is not None:
        if not args.history:
            raise ConfigError("--release: needs --history DIR")
        check_label(args.release)
        if (Path(args.history) / args.release).exists():
            raise ConfigError(f"--release: {args.release!r} is already in {args.history}")
    base = None
    if args.baseline:
        if not runs:
            raise ConfigError("--baseline: compares scenario cases; the fault matrix alone "
                              "(--faults without --only) has none")
        config = CompareConfig(margin=args.margin) if args.margin is not None else CompareConfig()
        base = resolve_baseline(args.baseline, config, args.max_runs)
        check_baseline(base, runs)
    return _Gate(defects, transports, faults, runs, fault_runs, scenarios, experiments,
                 repeat, base)


def _store_history(results: list[CaseResult], history: Path, label: str) -> None:
    """Keep the case runs of this gate as release ``label`` (``<case>-<transport>/run-K``)."""
    reports: list[Path] = []
    groups: list[str] = []
    for r in results:
        if r.case.startswith("fault:") or not r.report_dir:
            continue
        folder = Path(r.report_dir)
        found = sorted(folder.glob("run-*/report.json"),
                       key=lambda q: int(q.parent.name[4:])) or sorted(folder.glob("report.json"))
        reports += found
        groups += [case_folder(r.case, r.transport)] * len(found)
    if reports:
        rel = store_release(history, label, reports, groups)
        print(f"history: {len(rel.runs)} runs kept as release {rel.label} in {history}")


def _overall(results: list[CaseResult]) -> int:
    if any(r.status == "ERROR" for r in results):
        return EXIT_ENVIRONMENT
    if any(r.status == "FAIL" for r in results):
        return EXIT_FAIL
    return EXIT_PASS


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """``catga-bench gate``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return int(exc.code or 0)
    try:
        gate = _configure(args)
    except ConfigError as exc:
        sys.stderr.write(f"catga-bench gate: error: {exc}\n")
        return EXIT_USAGE
    out_dir = Path(args.report_dir or f"reports/gate-{time.strftime('%Y%m%d-%H%M%S')}")
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = len(gate.fault_runs) if gate.faults is not None else None
    print_header(len(gate.runs), cells, args.profile, gate.transports, gate.defects, out_dir)
    started = time.monotonic()
    progress = Progress(len(gate.runs) + len(gate.fault_runs))
    if gate.baseline is not None:
        print(f"baseline: {gate.baseline.label}; each case runs {gate.repeat} times (up to "
              f"{gate.baseline.max_runs} while inconclusive)", flush=True)
    results = run.run_cases(gate.runs, args.profile, gate.scenarios, out_dir, progress,
                            gate.repeat, gate.baseline)
    results += run.run_fault_matrix(gate.fault_runs, args.profile, gate.experiments, out_dir,
                                    args.jobs, progress, first_index=len(gate.runs) + 1)
    code = _overall(results)
    print_table(results)
    if args.history:
        _store_history(results, Path(args.history), args.release or default_label())
    wall = round(time.monotonic() - started, 1)
    print_outcome(code, wall)
    if args.json:
        _write_json(Path(args.json), {
            "profile": args.profile, "transports": gate.transports,
            "faults": gate.faults or [], "defects": sorted(gate.defects), "exit_code": code,
            "runs": gate.repeat,
            "baseline": gate.baseline.label if gate.baseline is not None else None,
            "passed": code == EXIT_PASS, "wall_s": wall, "report_dir": str(out_dir),
            "cases": [r.to_dict() for r in results]})
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
