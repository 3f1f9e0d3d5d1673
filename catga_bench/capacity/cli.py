"""``catga-bench capacity``: the highest rate a scenario's system holds under its SLO, as a
bracket ``[lo, hi)`` (MLRsearch, RFC 9971; :mod:`catga_bench.capacity.search`), with the
generator's own ceiling beside it (:mod:`catga_bench.capacity.ceiling`).

Exit codes: 0 a bracket was found (its lower bound confirmed by the final trials; or the
system held at ``--max-rate``); 1 the SLO failed even at ``--min-rate``; 2 usage error (one
line); 3 no answer: a trial's run failed for an environment reason, the generator could not
offer even the lowest rate, or the budget ran out before a confirmed bracket of the asked
width (the report still gives the best bracket so far).
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from catga_bench.capacity import ceiling as ceil
from catga_bench.capacity.hostspeed import HostSpeedProbe
from catga_bench.capacity.model import Phase, SearchResult, SearchSettings, Trial
from catga_bench.capacity.report import headline, host_speed_text, rate_text, write
from catga_bench.capacity.search import CapacitySearch
from catga_bench.capacity.trial import TrialBroken, TrialRunner
from catga_bench.errors import EXIT_ENVIRONMENT, EXIT_FAIL, EXIT_PASS, EXIT_USAGE, ConfigError
from catga_bench.judge.breach import BreachLimits
from catga_bench.judge.values import as_list

#: options the trials set themselves: not allowed after ``--``
OWN_OPTIONS = ("-u", "--users", "-r", "--spawn-rate", "-t", "--run-time", "--rate",
               "--report-dir", "--headless", "-f", "--locustfile", "--catga-stop-on-breach-s",
               "--only-summary")
#: share of the budget kept for measuring the generator's ceiling (when not cached)
CEILING_SHARE = 0.2
EXIT_BY_OUTCOME = {"bracket": EXIT_PASS, "at_max_rate": EXIT_PASS, "below_min_rate": EXIT_FAIL,
                   "budget": EXIT_ENVIRONMENT, "generator": EXIT_ENVIRONMENT}

EPILOG = """\
examples:
  catga-bench capacity -f scenarios/high_throughput.py
  catga-bench capacity -f scenarios/core_black_box.py --max-time 600 -- --nats-url nats://h:4222
  catga-bench capacity -f scenarios/http_orders.py --trial-s 5 --final-trials 3
  catga-bench capacity --ceiling-only nats

exit codes: 0 a bracket was found, 1 the SLO failed even at --min-rate, 2 usage error,
            3 no answer (a trial's environment failed, the generator could not offer the
              lowest rate, or the budget ran out first: the best bracket so far is reported)
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="catga-bench capacity", epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Find the highest rate a scenario's system holds under its SLO "
                            "(RFC 9971 MLRsearch): short trials double then bisect to a "
                            "bracket, final trials confirm both its bounds. Options after "
                            "`--` go to every trial's Locust command (--transport, --sut, "
                            "--sut-spec, --nats-url, --qos, --slo-p99-ms ...).")
    p.add_argument("-f", "--scenario", metavar="FILE", help="the scenario (locustfile)")
    p.add_argument("--start-rate", type=float, default=None, metavar="MSG_PER_S",
                   help="the first trial's rate (default: the scenario's rate, else 1000)")
    p.add_argument("--max-rate", type=float, default=None, metavar="MSG_PER_S",
                   help="never offer more (default: no limit)")
    p.add_argument("--min-rate", type=float, default=10.0, metavar="MSG_PER_S",
                   help="never offer less; failing here: exit 1 (default: %(default)g)")
    p.add_argument("--trial-s", type=float, default=5.0, metavar="S",
                   help="length of a search trial (default: %(default)g)")
    p.add_argument("--final-trials", type=int, default=3, metavar="N",
                   help="final trials confirming the lower bound; 0: none (default: "
                        "%(default)s)")
    p.add_argument("--final-trial-s", type=float, default=20.0, metavar="S",
                   help="length of a final trial (default: %(default)g)")
    p.add_argument("--width", type=float, default=0.05, metavar="RATIO",
                   help="target width hi/lo - 1 of the bracket (default: %(default)g)")
    p.add_argument("--exceed-ratio", type=float, default=0.5, metavar="RATIO",
                   help="a trial, and a bound's final trials together, hold when at most "
                        "this share of their seconds breached the SLO (RFC 9971's exceed "
                        "ratio; default: %(default)g)")
    p.add_argument("--max-time", type=float, default=360.0, metavar="S",
                   help="the budget, wall-clock seconds, ceiling included (default: "
                        "%(default)g)")
    p.add_argument("--stop-on-breach-s", type=int, default=5, metavar="S",
                   help="a trial stops after this many seconds of sustained SLO breach; 0: "
                        "never (default: %(default)s)")
    p.add_argument("--users", type=int, default=10, metavar="N",
                   help="Locust users sharing the rate (default: %(default)s)")
    p.add_argument("--report-dir", default=None, metavar="DIR",
                   help="capacity.json/.md/.html and every trial's report (default: "
                        "reports/capacity-<scenario>-<time>/)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write capacity.json here")
    p.add_argument("--ceiling", default="auto", choices=("auto", "fresh", "off"),
                   help="the generator's ceiling beside the result: auto (cached within the "
                        "hour, else measured), fresh (measured now), off (default: auto)")
    p.add_argument("--ceiling-only", default=None, choices=ceil.KINDS,
                   help="measure only the generator's ceiling of this kind")
    return p


def _check(args: argparse.Namespace, extra: list[str]) -> None:
    """Raises ConfigError naming the option."""
    positive = {"--start-rate": args.start_rate, "--max-rate": args.max_rate,
                "--min-rate": args.min_rate, "--trial-s": args.trial_s,
                "--final-trial-s": args.final_trial_s, "--max-time": args.max_time,
                "--users": args.users}
    for option, value in positive.items():
        if value is not None and not value > 0:
            raise ConfigError(f"{option}: must be > 0, got {value:g}")
    if not 0 < args.width < 1:
        raise ConfigError(f"--width: must be in (0, 1), got {args.width:g}")
    if not 0 <= args.exceed_ratio < 1:
        raise ConfigError(f"--exceed-ratio: must be in [0, 1), got {args.exceed_ratio:g}")
    if args.final_trials < 0:
        raise ConfigError(f"--final-trials: must be >= 0, got {args.final_trials}")
    if args.stop_on_breach_s < 0:
        raise ConfigError(f"--stop-on-breach-s: must be >= 0, got {args.stop_on_breach_s}")
    if args.max_rate is not None and args.max_rate < args.min_rate:
        raise ConfigError(f"--max-rate: must be >= --min-rate ({args.min_rate:g}), got "
                          f"{args.max_rate:g}")
    if args.ceiling_only is None:
        if not args.scenario:
            raise ConfigError("-f/--scenario: required (or --ceiling-only KIND)")
        if not Path(args.scenario).is_file():
            raise ConfigError(f"-f/--scenario: no such file: {args.scenario}")
    for item in extra:
        name = item.split("=", 1)[0]
        if name in OWN_OPTIONS:
            raise ConfigError(f"{name}: set by capacity itself, not allowed after `--` "
                              "(use --users, --report-dir, --start-rate ...)")


def scenario_rate(path: Path) -> float | None:
    """The ``rate=`` of the file's ``Scenario(...)`` call, when it is a number literal."""
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Scenario":
            for kw in node.keywords:
                if kw.arg == "rate" and isinstance(kw.value, ast.Constant) and isinstance(
                        kw.value.value, int | float):
                    return float(kw.value.value)
    return None


def _settings(args: argparse.Namespace, start: float, **over: Any) -> SearchSettings:
    values: dict[str, Any] = {
        "start_rate": start, "max_rate": args.max_rate, "min_rate": args.min_rate,
        "trial_s": args.trial_s, "final_trials": args.final_trials,
        "final_trial_s": args.final_trial_s, "width": args.width,
        "exceed_ratio": args.exceed_ratio, "max_time_s": args.max_time}
    values.update(over)
    return SearchSettings(**values)


class _Session:
    """Runs trials in order with one progress line each; remembers the first report."""

    def __init__(self, runner: TrialRunner, started: float, label: str) -> None:
        self.runner = runner
        self.started = started
        self.label = label
        self.first_report: dict[str, Any] | None = None
        self.count = 0
        self.on_first: Callable[[dict[str, Any]], None] | None = None

    def __call__(self, rate: float, seconds: float, phase: Phase,
                 stop_after_s: int | None = None) -> Trial:
        self.count += 1
        t = self.runner(rate, seconds, phase, self.count, stop_after_s)
        if self.first_report is None and t.report_dir is not None:
            self.first_report = json.loads((Path(t.report_dir) / "report.json").read_text())
            if self.on_first is not None:
                self.on_first(self.first_report)
        p99 = "—" if t.p99_ms is None else f"{t.p99_ms:,.2f}"
        early = "  stopped early" if t.stopped_early else ""
        print(f"[{self.label} {self.count:2d}] {phase:7s} {rate_text(rate):>9} msg/s  "
              f"{t.verdict:7s} p99 {p99:>8} ms  achieved {rate_text(t.achieved_rate):>9} "
              f"msg/s  breached {t.breached}/{t.seconds} s  "
              f"elapsed {time.monotonic() - self.started:5.0f} s{early}"
              + ("" if t.verdict == "PASS" else f"  ({t.reason})"), flush=True)
        return t


def _p99_limit(report: dict[str, Any] | None) -> float | None:
    return BreachLimits.from_slo_rows(as_list((report or {}).get("slo"))).p99_ms


def _end_trial(result: SearchResult, rate: float | None) -> dict[str, Any]:
    """P99 and achieved rate at ``rate``: the medians of its final trials, else of its search
    trials."""
    if rate is None:
        return {}
    at = [t for t in result.trials if abs(t.rate - rate) <= 1e-6 * rate]
    finals = [t for t in at if t.phase == "final"]
    at = finals or at
    if not at:
        return {}
    p99s = [t.p99_ms for t in at if t.p99_ms is not None]
    achieved = [t.achieved_rate for t in at if t.achieved_rate is not None]
    return {"p99_ms": round(statistics.median(p99s), 3) if p99s else None,
            "achieved_rate": round(statistics.median(achieved), 2) if achieved else None,
            "trials": len(at), "phase": at[0].phase}


def _nats_passthrough(extra: list[str]) -> list[str]:
    for i, item in enumerate(extra):
        if item == "--nats-url" and i + 1 < len(extra):
            return ["--nats-url", extra[i + 1]]
        if item.startswith("--nats-url="):
            return [item]
    return []


def _measure_ceiling(kind: str, args: argparse.Namespace, out_dir: Path, started: float,
                     start_rate: float, p99_ms: float | None, extra: list[str],
                     fresh: bool) -> dict[str, Any]:
    """The generator's ceiling of ``kind`` (cached, or measured with short trials in what is
    left of the budget). Never raises: a failure is reported in the dict."""
    if not fresh:
        cached = ceil.load_cached(kind, p99_ms, args.trial_s, args.exceed_ratio)
        if cached is not None:
            return cached
    try:
        scenario = ceil.scenario_file(kind)
    except FileNotFoundError as exc:
        return {"kind": kind, "error": str(exc)}
    passthrough = ([] if p99_ms is None else ["--slo-p99-ms", f"{p99_ms:g}"])
    if kind != "embedded":
        passthrough += _nats_passthrough(extra)
    runner = TrialRunner(scenario, out_dir / f"ceiling-{kind}", users=args.users,
                         extra=passthrough, stop_on_breach_s=args.stop_on_breach_s,
                         exceed_ratio=args.exceed_ratio)
    session = _Session(runner, started, "ceiling")
    left = args.max_time - (time.monotonic() - started)
    # the same trial length as the system's search: shorter trials see fewer latency spikes
    # and would put the ceiling too high to compare with
    settings = _settings(args, start_rate, final_trials=0, width=max(args.width, 0.1),
                         max_time_s=left, max_rate=None)
    search = CapacitySearch(settings, lambda r, s, ph, stop: session(r, s, "ceiling", stop),
                            lambda: (
        time.monotonic() - started) - (args.max_time - left))
    try:
        result = search.run()
    except TrialBroken as exc:
        return {"kind": kind, "error": str(exc), "trials": len(search.trials)}
    summary = ceil.summary(kind, result, p99_ms)
    if result.outcome in ("bracket", "at_max_rate"):
        ceil.store(kind, p99_ms, args.trial_s, summary, args.exceed_ratio)
    return summary


def main(argv: list[str] | None = None) -> int:
    """``catga-bench capacity``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    try:
        args = build_parser().parse_args(argv)
        _check(args, extra)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except ConfigError as exc:
        sys.stderr.write(f"catga-bench capacity: error: {exc}\n")
        return EXIT_USAGE
    return run(args, extra)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    """Search (or measure the ceiling only), report, and return the exit code."""
    started = time.monotonic()
    kind_only = args.ceiling_only
    scenario = (ceil.scenario_file(kind_only) if kind_only else Path(args.scenario)).resolve()
    name = scenario.stem.lstrip("_")
    out_dir = Path(args.report_dir or f"reports/capacity-{name}-"
                                      f"{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    declared = scenario_rate(scenario)
    start = args.start_rate or (max(args.min_rate, declared) if declared else 1000.0)
    runner = TrialRunner(scenario, out_dir, users=args.users, extra=extra,
                         stop_on_breach_s=args.stop_on_breach_s, exceed_ratio=args.exceed_ratio)
    label = f"ceiling-{kind_only}" if kind_only else "capacity"
    session = _Session(runner, started, label)
    reserve = [0.0 if kind_only or args.ceiling == "off" else CEILING_SHARE * args.max_time]

    def on_first(report: dict[str, Any]) -> None:
        kind = ceil.matching_kind(report)
        if kind is None or (args.ceiling == "auto" and
                            ceil.load_cached(kind, _p99_limit(report), args.trial_s,
                                            args.exceed_ratio) is not None):
            reserve[0] = 0.0  # nothing to measure later: the search may use it all

    session.on_first = on_first
    print(f"catga-bench capacity: {scenario} from {start:,.0f} msg/s, trials {args.trial_s:g} s, "
          f"final {args.final_trials} x {args.final_trial_s:g} s, width {args.width:.0%}, "
          f"budget {args.max_time:g} s; reports in {out_dir}/", flush=True)
    search = CapacitySearch(_settings(args, start), session,
                            lambda: time.monotonic() - started + reserve[0])
    broken: str | None = None
    with HostSpeedProbe() as probe:  # beside the search and the ceiling (hostspeed.py)
        try:
            result = search.run()
        except TrialBroken as exc:
            broken = str(exc)
            result = SearchResult(outcome="budget", lo=search.state.lo, hi=search.state.hi,
                                  hi_kind=search.state.hi_kind,  # type: ignore[arg-type]
                                  trials=list(search.trials),
                                  note=f"environment failure: {exc}")
        return _report(args, extra, started, scenario, name, out_dir, start, session, result,
                       broken, probe)


def _report(args: argparse.Namespace, extra: list[str], started: float, scenario: Path,
            name: str, out_dir: Path, start: float, session: _Session, result: SearchResult,
            broken: str | None, probe: HostSpeedProbe) -> int:
    """Measure the ceiling (unless off or broken), write the report, return the exit code."""
    kind_only = args.ceiling_only
    first = session.first_report or {}
    p99_ms = _p99_limit(first)
    transport = str(first.get("transport") or "embedded")
    ceiling: dict[str, Any] | None = None
    if kind_only:
        ceiling = {**ceil.summary(kind_only, result, p99_ms), "source": "this search"}
        if result.outcome in ("bracket", "at_max_rate"):
            ceil.store(kind_only, p99_ms, args.trial_s, ceiling, args.exceed_ratio)
    elif args.ceiling != "off" and broken is None:
        kind = ceil.matching_kind(first)
        if kind is None:
            ceiling = {"kind": None, "error": f"no ceiling for transport {transport}"}
        else:
            ceiling = _measure_ceiling(kind, args, out_dir, started,
                                       result.lo or start, p99_ms, extra,
                                       fresh=args.ceiling == "fresh")
    limited, why = ceil.limited_by(result, ceiling if ceiling and "error" not in ceiling
                                   else None, transport)
    code = EXIT_ENVIRONMENT if broken else EXIT_BY_OUTCOME[result.outcome]
    doc = {
        "kind": "ceiling" if kind_only else "capacity",
        "scenario": str(scenario),
        "scenario_name": first.get("scenario") or name,
        "transport": transport,
        "sut": first.get("sut"),
        "passthrough": extra,
        "p99_limit_ms": p99_ms,
        "capacity": {"lo": result.lo, "hi": result.hi, "width": result.width,
                     "confirmed": result.confirmed,
                     "hi_confirmed": result.hi_confirmed, "unit": "msg/s"},
        "at_lo": _end_trial(result, result.lo),
        "at_hi": _end_trial(result, result.hi),
        "ceiling": ceiling,
        "limited_by": limited,
        "limited_by_reason": why,
        "elapsed_s": round(time.monotonic() - started, 1),
        "settings": {**vars(args), "start_rate": start},
        "result": result.to_dict(),
        "environment_failure": broken,
        "host_speed": probe.summary(),
        "exit_code": code,
    }
    doc["verdict"] = headline(doc)
    paths = write(doc, out_dir)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(paths["json"].read_text())
    _print_summary(doc, result, paths["html"])
    if broken:
        sys.stderr.write(f"catga-bench capacity: error: {broken}\n")
    return code


def _print_summary(doc: dict[str, Any], result: SearchResult, html: Path) -> None:
    at_lo, at_hi = doc["at_lo"], doc["at_hi"]
    ceiling = doc.get("ceiling") or {}
    print(f"\n{doc['verdict']}")
    if result.final_count:
        print(f"  final trials at lo: {result.final_passes} of {result.final_count} held, "
              f"exceed ratio {result.exceed_ratio:.2f}")
    if result.hi_confirmed and result.hi_exceed_ratio is not None:
        print(f"  final trials at hi: exceed ratio {result.hi_exceed_ratio:.2f}")
    print(f"  at lo: p99 {_ms(at_lo.get('p99_ms'))} ms, achieved "
          f"{rate_text(at_lo.get('achieved_rate'))} msg/s;  at hi: p99 {_ms(at_hi.get('p99_ms'))}"
          f" ms, achieved "
          f"{rate_text(at_hi.get('achieved_rate'))} msg/s")
    if ceiling.get("error"):
        print(f"  generator ceiling: not measured ({ceiling['error']})")
    elif ceiling:
        source = ceil.cached_text(ceiling)
        print(f"  generator ceiling ({ceiling.get('kind')}): [{rate_text(ceiling.get('lo'))}, "
              f"{rate_text(ceiling.get('hi'))}) msg/s{source}")
    print(f"  limited by: {doc['limited_by']} ({doc['limited_by_reason']})")
    speed = doc.get("host_speed") or {}
    if speed.get("spread") is not None:
        print(f"  host speed: {host_speed_text(speed)}")
    print(f"  {result.note}")
    print(f"  {len(result.trials)} trials, {doc['elapsed_s']:.0f} s; report: {html}")


def _ms(value: Any) -> str:
    """A latency in ms as the trial lines print it (2 decimals), or an em dash."""
    return "—" if not isinstance(value, int | float) else f"{value:,.2f}"
