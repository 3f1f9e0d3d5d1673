"""``catga-bench compare BASELINE CANDIDATE``: did the candidate get slower? (and
``catga-bench compare --self-test``: can this host tell?). See :mod:`catga_bench.compare`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from catga_bench.compare.config import CompareConfig, load_config, parse_metrics
from catga_bench.compare.history import (
    check_label,
    default_label,
    is_history,
    latest_release,
    store_release,
)
from catga_bench.compare.printing import print_comparison
from catga_bench.compare.render import to_json, write_comparison
from catga_bench.compare.runner import RunFailed, parse_side
from catga_bench.compare.selftest import DEFAULT_SCENARIO, self_test
from catga_bench.compare.session import run_comparison
from catga_bench.errors import EXIT_ENVIRONMENT, EXIT_USAGE, ConfigError

EPILOG = """\
a side is a folder of run reports (every report.json under it), or a command line that makes
one run (it gets --report-dir RUN_DIR appended, or {report_dir} replaced), e.g.
  catga-bench compare reports/v1.4 reports/v1.5
  catga-bench compare reports/v1.4 \
      "locust -f scenarios/service_time.py --headless -u 4 -r 4 -t 8s --only-summary"
  catga-bench compare --self-test

exit codes: 0 same or better, 1 regressed (or an absolute limit broken), 2 usage or
            configuration error, 3 cannot tell at this noise (or a run gave no verdict)
"""


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on ONE line (exit 2), as every compare error is."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"catga-bench compare: error: {' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="catga-bench compare", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compare a candidate's runs with a baseline's: per metric the ratio of "
                    "medians with a bootstrap interval, a margin test and a Mann-Whitney test; "
                    "errors, lost and duplicates as absolute limits. Outcome: regressed, same "
                    "or better, or inconclusive (run more).")
    p.add_argument("baseline", nargs="?", help="folder of run reports, or a command line")
    p.add_argument("candidate", nargs="?", help="folder of run reports, or a command line")
    p.add_argument("--margin", type=float, default=None,
                   help="allowed relative worsening, in (0, 1) (default 0.03 = 3%%)")
    p.add_argument("--alpha", type=float, default=None,
                   help="one-sided significance level of both tests (default 0.05)")
    p.add_argument("--metrics", default=None, metavar="LIST",
                   help="comma list (default p99_ms,achieved_rate,error_ratio,lost,duplicates)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="TOML or YAML: metrics, margin, alpha, limits (options win)")
    p.add_argument("--runs", type=int, default=5, metavar="N",
                   help="runs per command side, interleaved A B A B (default 5, >= 2)")
    p.add_argument("--max-runs", type=int, default=10, metavar="N",
                   help="while inconclusive, 2 more runs per command side up to N (default 10)")
    p.add_argument("--run-timeout", type=float, default=600.0, metavar="S",
                   help="seconds one command run may take (default 600)")
    p.add_argument("--report-dir", default=None, metavar="DIR",
                   help="where the runs and the comparison's report.json/md/html go "
                        "(default reports/compare-TIMESTAMP)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the result as JSON")
    p.add_argument("--history", default=None, metavar="DIR",
                   help="keep the candidate's runs as a release in this history folder "
                        "(DIR/<release>/...; `catga-bench trend DIR` finds change points); a "
                        "BASELINE that is a history folder means its latest release")
    p.add_argument("--release", default=None, metavar="LABEL",
                   help="the release label in --history (default: the UTC time, "
                        "YYYYmmdd-HHMMSS)")
    p.add_argument("--self-test", action="store_true",
                   help="baseline vs baseline must pass, a seeded 10%% slower handler must fail")
    p.add_argument("-f", "--scenario", default=DEFAULT_SCENARIO, metavar="FILE",
                   help=f"--self-test's scenario (default {DEFAULT_SCENARIO})")
    p.add_argument("--seconds", type=int, default=8, metavar="S",
                   help="--self-test: seconds per run (default 8)")
    p.add_argument("--users", type=int, default=4, metavar="U",
                   help="--self-test: Locust users (default 4)")
    return p


def _config(args: argparse.Namespace) -> CompareConfig:
    cfg = load_config(Path(args.config)) if args.config else CompareConfig()
    changes = {k: getattr(args, k) for k in ("margin", "alpha") if getattr(args, k) is not None}
    if args.metrics is not None:
        changes["metrics"] = parse_metrics(args.metrics)
    if args.margin is not None and not 0 < args.margin < 1:
        raise ConfigError(f"--margin: must be in (0, 1) (0.03 = 3%), got {args.margin:g}")
    if args.alpha is not None and not 0 < args.alpha < 0.5:
        raise ConfigError(f"--alpha: must be in (0, 0.5), got {args.alpha:g}")
    return CompareConfig(**{**cfg.__dict__, **changes})


def _check(args: argparse.Namespace) -> None:
    if args.runs < 2:
        raise ConfigError(f"--runs: must be >= 2 (a spread needs two runs), got {args.runs}")
    if args.max_runs < args.runs:
        raise ConfigError(f"--max-runs: must be >= --runs ({args.runs}), got {args.max_runs}")
    if args.run_timeout <= 0:
        raise ConfigError(f"--run-timeout: must be > 0, got {args.run_timeout:g}")
    if args.release is not None:
        if not args.history:
            raise ConfigError("--release: needs --history DIR")
        check_label(args.release)
    if args.history and (Path(args.history) / (args.release or "")).is_dir() and args.release:
        raise ConfigError(f"--release: {args.release!r} is already in {args.history}; give "
                          "another label")
    if args.self_test:
        if args.baseline or args.candidate:
            raise ConfigError("--self-test takes no BASELINE/CANDIDATE")
        if not Path(args.scenario).is_file():
            raise ConfigError(f"-f/--scenario: no such file: {args.scenario}")
        if args.seconds < 1 or args.users < 1:
            raise ConfigError("--seconds and --users: must be >= 1")
    elif not (args.baseline and args.candidate):
        raise ConfigError("BASELINE and CANDIDATE: both are required (folders of run reports "
                          "or command lines), or --self-test")


def _write_json(path: str | None, text: str) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n", encoding="utf-8")


def _progress(line: str) -> None:
    print(line, flush=True)


def _compare(args: argparse.Namespace, config: CompareConfig, out_dir: Path) -> int:
    baseline = parse_side(args.baseline, "baseline")
    candidate = parse_side(args.candidate, "candidate")
    if isinstance(baseline, Path) and is_history(baseline):
        latest = latest_release(baseline)
        print(f"baseline: release {latest.label} of the history {baseline}")
        baseline = latest.path
    started = time.monotonic()
    comp = run_comparison(baseline, candidate, config, runs=args.runs, max_runs=args.max_runs,
                          out_dir=out_dir, timeout_s=args.run_timeout, progress=_progress)
    wall = round(time.monotonic() - started, 1)
    paths = write_comparison(comp, out_dir, {"wall_s": wall})
    print_comparison(comp)
    print(f"report: {paths['html']} ({wall} s)")
    _write_json(args.json, to_json(comp, {"wall_s": wall}))
    if args.history:
        rel = store_release(Path(args.history), args.release or default_label(),
                            [Path(r.path) for r in comp.candidate])
        print(f"history: the candidate's {len(rel.runs)} runs kept as release {rel.label} in "
              f"{args.history}")
    return comp.exit_code


def _self_test(args: argparse.Namespace, config: CompareConfig, out_dir: Path) -> int:
    started = time.monotonic()
    result = self_test(args.scenario, config, runs=args.runs, max_runs=args.max_runs,
                       seconds=args.seconds, users=args.users, out_dir=out_dir,
                       progress=_progress,
                       show=lambda c, title: print_comparison(c, title))
    wall = round(time.monotonic() - started, 1)
    write_comparison(result.same, out_dir / "same")
    write_comparison(result.slower, out_dir / "slower")
    data = {**result.to_dict(), "wall_s": wall}
    (out_dir / "self-test.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    for line in result.lines():
        print(line)
    print(f"reports: {out_dir}/same, {out_dir}/slower ({wall} s)")
    _write_json(args.json, json.dumps(data, indent=2))
    return result.exit_code


def main(argv: list[str] | None = None) -> int:
    """``catga-bench compare``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return int(exc.code or 0)
    out_dir = Path(args.report_dir or f"reports/compare-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        _check(args)
        config = _config(args)
        if args.self_test:
            return _self_test(args, config, out_dir.resolve())
        return _compare(args, config, out_dir.resolve())
    except ConfigError as exc:
        sys.stderr.write(f"catga-bench compare: error: {exc}\n")
        return EXIT_USAGE
    except RunFailed as exc:
        sys.stderr.write(f"catga-bench compare: environment failure: {exc}\n")
        return EXIT_ENVIRONMENT


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
