"""``catga-bench gate``: the release-gating chaos suite.

Every case is a real Locust run (``python -m locust -f scenarios/X.py --headless ...`` in a
subprocess) judged by the SLO gate of that run: its exit code and its ``report.json``. The suite
passes only when every case passes. Over a broker (``--transports nats,redis``) each case
gets a private broker (:class:`~catga_bench.brokers.BrokerProcess`, a free port, a temporary
data directory) and every case its own ``catga-bench serve`` process; ``core_killed`` kills that
process with SIGKILL mid-run and restarts it.

Seeded defects (``CATGA_BENCH_DEFECTS``, :mod:`catga_bench.defects`) are inherited by every
subprocess: that is how the tests prove each defect makes its case fail.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catga_bench.coreproc import CoreProcess, CoreStartError
from catga_bench.defects import ENV_VAR, defects_from_env, describe
from catga_bench.gate import EXIT_ENVIRONMENT, EXIT_FAIL, EXIT_PASS, EXIT_USAGE
from catga_bench.slo import ConfigError

PROFILES = ("ci", "release")
TRANSPORTS = ("embedded", "nats", "redis")


@dataclass(frozen=True)
class Case:
    """One gate case: a scenario, how long per profile, and what it proves."""

    name: str
    scenario: str
    what: str
    seconds: dict[str, int]
    transports: tuple[str, ...] = ("embedded",)
    users: int = 20
    args: tuple[str, ...] = ()
    remote_users: int = 10
    #: core_killed: seconds into the run to kill -9 the core, and how long it stays down
    kill_at: dict[str, float] = field(default_factory=dict)
    down_s: float = 1.5


_REMOTE = ("embedded", "nats", "redis")

CASES: tuple[Case, ...] = (
    Case("high_fanout", "high_fanout", "120 handlers per event: P99 < 100 ms, nothing lost",
         {"ci": 10, "release": 60}, _REMOTE),
    Case("high_throughput", "high_throughput", "10.5K msg/s offered: >= 10K msg/s achieved, "
         "P99 < 100 ms", {"ci": 12, "release": 60}),
    Case("slow_handlers", "slow_handlers", "5 s handlers cut at 1 s: fast P99 < 100 ms, "
         "timeouts counted, loop lag P99 < 50 ms", {"ci": 10, "release": 60}, _REMOTE),
    Case("failing_handlers", "failing_handlers", "handler outage 4-10 s: breaker opens within "
         "5 failures, closes <= 3 s after recovery, nothing lost", {"ci": 16, "release": 60},
         _REMOTE),
    Case("overload", "overload", "10x overload: rejections counted, P99 of admitted < 100 ms, "
         "RSS growth < 100 MB", {"ci": 10, "release": 60}),
    Case("exactly_once", "exactly_once", "QoS 2 with 5% re-sent ids: duplicates 0, lost 0",
         {"ci": 8, "release": 60}),
    Case("core_killed", "high_fanout", "QoS 1, the core killed -9 mid-run and restarted: "
         "lost 0", {"ci": 12, "release": 60}, ("nats", "redis"), remote_users=5,
         args=("--qos", "1", "--handlers", "20", "--slo-p99-ms", "off", "--slo-p999-ms", "off",
               "--slo-min-throughput", "off", "--slo-max-error-ratio", "off"),
         kill_at={"ci": 4.0, "release": 20.0}),
)
CASE_NAMES = tuple(c.name for c in CASES)


@dataclass
class CaseResult:
    case: str
    transport: str
    status: str  # PASS | FAIL | ERROR
    exit_code: int | None
    verdict: str
    seconds: int
    wall_s: float
    report_dir: str
    failed_targets: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    slo: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


EPILOG = f"""\
cases (each a real Locust run judged by the scenario's SLO gate):
{chr(10).join(f"  {c.name:<17} {c.what} [{', '.join(c.transports)}]" for c in CASES)}

profiles: ci runs each case 8-16 s (failing_handlers 16 s: its outage window needs >= 15 s);
release runs each 60 s.

over a broker (--transports nats,redis): a private nats-server / redis-server on a free port
is started per case (binaries from PATH), with its own `catga-bench serve` process;
the generator drives it with --transport X --X-url URL. core_killed runs only there.

seeded defects (tests of the gate only): the environment variable {ENV_VAR} (comma list) is
inherited by every subprocess and breaks the core on purpose; the suite must then fail:
{describe()}

exit codes: 0 every case passed, 1 a case missed a target, 2 usage or configuration error,
            3 a case could not run (broker or core did not start, the generator could not
              offer the load, no report); 3 wins over 1
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
                   help="scenario directory (default: ./scenarios, else the one next to the "
                        "catga_bench package)")
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
    for d in (Path("scenarios"), Path(__file__).resolve().parents[1] / "scenarios"):
        if d.is_dir() and (d / "high_fanout.py").exists():
            return d.resolve()
    raise ConfigError("--scenarios: no scenarios directory found; pass --scenarios DIR")


def plan(cases: list[str] | None, transports: list[str]) -> list[tuple[Case, str]]:
    """The (case, transport) pairs to run, transports in the order given."""
    chosen = [c for c in CASES if cases is None or c.name in cases]
    runs = [(c, t) for t in transports for c in chosen if t in c.transports]
    if cases is not None:
        for name in cases:
            case = next(c for c in CASES if c.name == name)
            if not any(t in case.transports for t in transports):
                raise ConfigError(f"--only {name}: runs on {', '.join(case.transports)}; add "
                                  f"--transports {case.transports[0]}")
    if not runs:
        raise ConfigError("nothing to run")
    return runs


# --------------------------------------------------------------------------- running cases
def _tail(text: str, n: int = 3) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) if lines else "(no output)"


def _figures(r: dict[str, Any]) -> dict[str, Any]:
    b = r.get("breaker", {})
    return {
        "p99_ms": r.get("latency_ms", {}).get("p99"),
        "achieved_rate": r.get("achieved_rate"),
        "sent": r.get("sent"),
        "lost": r.get("lost"),
        "duplicates": r.get("duplicates"),
        "rejected": r.get("rejected"),
        "timeouts": r.get("timeouts"),
        "breaker_opened": b.get("opened"),
        "failures_before_first_open": b.get("failures_before_first_open"),
        "rss_growth_mb": r.get("rss_mb", {}).get("growth"),
        "loop_lag_max_ms": r.get("event_loop_lag_ms", {}).get("max"),
    }


def run_case(case: Case, transport: str, profile: str, scenarios: Path, out_dir: Path,
             broker_url: str | None = None) -> CaseResult:
    """Run one case (a Locust subprocess; over a broker with its own serve process)."""
    seconds = case.seconds[profile]
    report_dir = out_dir / f"{case.name}-{transport}"
    report_dir.mkdir(parents=True, exist_ok=True)
    users = case.users if transport == "embedded" else case.remote_users
    cmd = [sys.executable, "-m", "locust", "-f", str(scenarios / f"{case.scenario}.py"),
           "--headless", "-u", str(users), "-r", str(users), "-t", f"{seconds}s",
           "--only-summary", "--report-dir", str(report_dir), *case.args]
    serve: CoreProcess | None = None
    chaos: threading.Thread | None = None
    chaos_errors: list[str] = []
    t0 = time.monotonic()

    def result(status: str, code: int | None, verdict: str,
               report: dict[str, Any] | None = None) -> CaseResult:
        rows = (report or {}).get("slo", [])
        return CaseResult(case.name, transport, status, code, verdict, seconds,
                          round(time.monotonic() - t0, 1), str(report_dir),
                          [r["name"] for r in rows if not r["passed"]],
                          _figures(report) if report else {}, rows)

    if transport != "embedded":
        assert broker_url is not None
        cmd += ["--transport", transport, f"--{transport}-url", broker_url]
        extra = ("--ack-wait-s", "2") if case.kill_at else ()
        serve = CoreProcess(transport, broker_url, report_dir / "serve.log",
                            ["--scenarios", str(scenarios), *extra])
        try:
            serve.start()
        except CoreStartError as exc:
            return result("ERROR", None, f"the core did not start: {exc}")
        if case.kill_at:
            kill_at, down_s = case.kill_at[profile], case.down_s
            srv = serve

            def _chaos() -> None:
                time.sleep(kill_at)
                srv.kill()  # kill -9 mid-run: messages in progress neither acked nor reported
                time.sleep(down_s)
                try:
                    srv.start()
                except CoreStartError as exc:
                    chaos_errors.append(f"the core did not restart: {exc}")

            chaos = threading.Thread(target=_chaos, daemon=True)
            chaos.start()
    log_path = report_dir / "locust.log"
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=report_dir,
                                  env=dict(os.environ), timeout=seconds + 240)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        code = None
    finally:
        if chaos is not None:
            chaos.join(30)
        if serve is not None:
            serve.stop()
    output = log_path.read_text(errors="replace") if log_path.exists() else ""
    if code is None:
        return result("ERROR", None, f"Locust did not finish within {seconds + 240} s")
    report_path = report_dir / "report.json"
    if not report_path.exists():
        return result("ERROR", code, f"no report (exit {code}): {_tail(output)}")
    report = json.loads(report_path.read_text())
    verdict = str(report.get("verdict", ""))
    if chaos_errors:
        return result("ERROR", EXIT_ENVIRONMENT, "; ".join(chaos_errors), report)
    if case.kill_at and serve is not None and serve.starts < 2:
        return result("ERROR", EXIT_ENVIRONMENT, "the core was never killed", report)
    if code == EXIT_PASS:
        return result("PASS", code, verdict, report)
    if code == EXIT_FAIL:
        return result("FAIL", code, verdict, report)
    return result("ERROR", code, verdict or f"exit {code}: {_tail(output)}", report)


def _run_isolated(case: Case, transport: str, profile: str, scenarios: Path,
                  out_dir: Path) -> CaseResult:
    """Run one case; over a broker, on a private broker of its own (fresh streams and
    consumers: a durable consumer left by an earlier case cannot change this one's ack wait)."""
    if transport == "embedded":
        return run_case(case, transport, profile, scenarios, out_dir)
    from catga_bench.brokers import BrokerProcess, BrokerStartError

    try:
        broker = BrokerProcess(transport)  # type: ignore[arg-type]
        broker.start()
    except BrokerStartError as exc:
        return CaseResult(case.name, transport, "ERROR", None,
                          f"the {transport} broker did not start: {exc}",
                          case.seconds[profile], 0.0, "")
    try:
        return run_case(case, transport, profile, scenarios, out_dir, broker.url)
    finally:
        broker.stop()
        broker.cleanup()


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}{unit}"
    return f"{v:,}{unit}" if isinstance(v, int) else f"{v}{unit}"


def _key_figures(r: CaseResult) -> str:
    f = r.figures
    if not f:
        return "-"
    parts = [f"p99 {_fmt(f['p99_ms'], ' ms')}", f"sent {_fmt(f['sent'])}",
             f"lost {_fmt(f['lost'])}"]
    if r.case == "exactly_once":
        parts.append(f"dup {_fmt(f['duplicates'])}")
    if r.case == "overload":
        parts += [f"rejected {_fmt(f['rejected'])}", f"RSS +{_fmt(f['rss_growth_mb'], ' MB')}"]
    if r.case == "failing_handlers":
        parts.append(f"breaker opened {_fmt(f['breaker_opened'])} after "
                     f"{_fmt(f['failures_before_first_open'])}")
    if r.case == "high_throughput":
        parts.append(f"{_fmt(f['achieved_rate'], ' msg/s')}")
    if r.case == "slow_handlers":
        parts.append(f"timeouts {_fmt(f['timeouts'])}")
    return ", ".join(parts)


def print_table(results: list[CaseResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="catga-bench gate")
    for col in ("case", "transport", "verdict", "key figures", "result"):
        table.add_column(col, overflow="fold")
    style = {"PASS": "bold green", "FAIL": "bold red", "ERROR": "bold yellow"}
    for r in results:
        failed = ", ".join(r.failed_targets)
        verdict = r.verdict if r.status == "ERROR" or not failed else f"missed: {failed}"
        if r.status == "PASS":
            verdict = f"{len(r.slo)} targets met"
        table.add_row(r.case, r.transport, verdict, _key_figures(r),
                      f"[{style[r.status]}]{r.status}[/]")
    Console().print(table)


def _overall(results: list[CaseResult]) -> int:
    if any(r.status == "ERROR" for r in results):
        return EXIT_ENVIRONMENT
    if any(r.status == "FAIL" for r in results):
        return EXIT_FAIL
    return EXIT_PASS


def main(argv: list[str] | None = None) -> int:
    """``catga-bench gate``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return int(exc.code or 0)
    try:
        defects = defects_from_env()
        transports = _split(args.transports, TRANSPORTS, "--transports")
        only = _split(args.only, CASE_NAMES, "--only") if args.only is not None else None
        runs = plan(only, transports)
        scenarios = _scenario_dir(args.scenarios)
    except ConfigError as exc:
        sys.stderr.write(f"catga-bench gate: error: {exc}\n")
        return EXIT_USAGE
    out_dir = Path(args.report_dir or f"reports/gate-{time.strftime('%Y%m%d-%H%M%S')}")
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    seeded = f"; seeded defects: {', '.join(sorted(defects))}" if defects else ""
    print(f"catga-bench gate: {len(runs)} case(s), profile {args.profile}, transports "
          f"{', '.join(transports)}{seeded}; reports in {out_dir}/", flush=True)
    started = time.monotonic()
    results: list[CaseResult] = []
    for index, (case, transport) in enumerate(runs, 1):
        print(f"[{index}/{len(runs)}] {case.name} on {transport} "
              f"({case.seconds[args.profile]} s) ...", flush=True)
        r = _run_isolated(case, transport, args.profile, scenarios, out_dir)
        results.append(r)
        detail = r.verdict if r.status != "PASS" else _key_figures(r)
        print(f"[{index}/{len(runs)}] {case.name} on {transport}: {r.status} in "
              f"{r.wall_s:.1f} s: {detail}", flush=True)
    code = _overall(results)
    print_table(results)
    wall = round(time.monotonic() - started, 1)
    summary = {EXIT_PASS: "PASS: every case passed", EXIT_FAIL: "FAIL: a case missed a target",
               EXIT_ENVIRONMENT: "ERROR: a case could not run"}[code]
    print(f"catga-bench gate: {summary} ({wall} s)", flush=True)
    if args.json:
        doc = {"profile": args.profile, "transports": transports,
               "defects": sorted(defects), "exit_code": code, "passed": code == EXIT_PASS,
               "wall_s": wall, "report_dir": str(out_dir),
               "cases": [r.to_dict() for r in results]}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
