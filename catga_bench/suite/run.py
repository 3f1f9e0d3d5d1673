"""``catga-bench gate``: the release-gating chaos suite.

Every case is a real Locust run (``python -m locust -f scenarios/X.py --headless ...`` in a
subprocess) judged by the SLO gate of that run: its exit code and its ``report.json``. The suite
passes only when every case passes. Over a broker (``--transports nats,redis``) each case
gets a private broker (:class:`~catga_bench.processes.brokers.BrokerProcess`, a free port, a
temporary data directory) and every case its own ``catga-bench serve`` process; ``core_killed``
kills that process with SIGKILL mid-run and restarts it.

The fault matrix (``--faults LIST|all``) runs shipped chaos experiments
(``experiments/<fault>.yaml``, ``python -m catga_bench.chaos run``) once per broker transport
chosen, each cell judged by the experiment's exit code and journal
(:func:`judge_fault_cell`).

Seeded defects (``CATGA_BENCH_DEFECTS``, :mod:`catga_bench.targets.defects`) are inherited by every
subprocess: that is how the tests prove each defect makes its case fail.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catga_bench.errors import EXIT_ENVIRONMENT, EXIT_FAIL, EXIT_PASS, EXIT_USAGE, ConfigError
from catga_bench.processes.coreproc import CoreProcess, CoreStartError
from catga_bench.processes.locust import locust_command, transport_options
from catga_bench.targets.defects import ENV_VAR, defects_from_env, describe

PROFILES = ("ci", "release")
TRANSPORTS = ("embedded", "nats", "redis")
BROKERS = ("nats", "redis")


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


@dataclass(frozen=True)
class Fault:
    """One fault of the matrix: the shipped experiment ``experiments/<name>.yaml``, what it
    injects and what it checks, and its ``--var`` overrides per profile (``{}`` = the file's
    defaults)."""

    name: str
    what: str
    vars: dict[str, dict[str, str]]
    #: its targets are latencies: never run beside another cell (``--jobs``)
    exclusive: bool = False


#: every fault cell also checks, per QoS level of its three streams: QoS 1/2 lost 0, QoS 2
#: duplicates 0, QoS 0 loss reported
FAULTS: tuple[Fault, ...] = (
    Fault("link_latency", "link latency 50 ms +-10 ms: exit 0, P99 < 500 ms",
          {"ci": {"duration": "11", "warmup_s": "3", "fault_s": "4"}, "release": {}},
          exclusive=True),
    Fault("link_partition", "link down 10 s, then healed: throughput back within 10 s",
          {"ci": {"duration": "22", "warmup_s": "4"}, "release": {}}),
    Fault("bandwidth_squeeze", "link squeezed to 32 KB/s: throughput back within 15 s",
          {"ci": {"duration": "11", "warmup_s": "3", "fault_s": "3"}, "release": {}}),
    Fault("reset_peer_storm", "every connection reset after 500 ms: throughput back "
          "within 10 s", {"ci": {"duration": "11", "warmup_s": "3", "fault_s": "3"},
                          "release": {}}),
    Fault("broker_kill_restart", "broker killed -9 and restarted: throughput back within 15 s",
          {"ci": {"duration": "12", "warmup_s": "3", "down_s": "2"}, "release": {}}),
    Fault("broker_pause", "broker frozen (SIGSTOP) then resumed: throughput back within 10 s",
          {"ci": {"duration": "11", "warmup_s": "3", "pause_s": "3"}, "release": {}}),
    Fault("handler_outage", "charge_card fails every call for 4 s: breakers open within 5 "
          "failures, close within 10 s of recovery", {"ci": {"duration": "12", "warmup_s": "3"},
                                                      "release": {}}),
    Fault("overload_10x", "10x overload into a bulkhead: rejected > 0 (counted), admitted "
          "P99 < 100 ms, RSS growth < 100 MB", {"ci": {"duration": "12"}, "release": {}},
          exclusive=True),
)
FAULT_NAMES = tuple(f.name for f in FAULTS)
#: seconds a fault cell's chaos run may take (environment up, load, rollbacks, teardown)
FAULT_TIMEOUT_S = 300


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
                   help="scenario directory (default: ./scenarios, else the one next to the "
                        "catga_bench package)")
    p.add_argument("--faults", default=None, metavar="LIST|all",
                   help="also run the fault matrix: these chaos experiments "
                        f"({', '.join(FAULT_NAMES)}) or all, once per broker transport; "
                        "without --only, ONLY the fault matrix runs (default: none)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="run up to N fault cells at once (each has its own broker, proxy and "
                        "core on free ports); cells whose targets are latencies "
                        f"({', '.join(f.name for f in FAULTS if f.exclusive)}) always run "
                        "alone. Default: %(default)s")
    p.add_argument("--experiments", default=None, metavar="DIR",
                   help="chaos experiment directory (default: ./experiments, else the one "
                        "next to the catga_bench package)")
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


def _experiments_dir(raw: str | None) -> Path:
    if raw is not None:
        d = Path(raw)
        if not d.is_dir():
            raise ConfigError(f"--experiments: no such directory: {d}")
        return d.resolve()
    for d in (Path("experiments"), Path(__file__).resolve().parents[1] / "experiments"):
        if d.is_dir() and (d / f"{FAULT_NAMES[0]}.yaml").exists():
            return d.resolve()
    raise ConfigError("--experiments: no experiments directory found; pass --experiments DIR")


def parse_faults(raw: str) -> list[str]:
    """``--faults``: a comma list of fault names, or ``all``; in the matrix's order."""
    items = _split(raw, (*FAULT_NAMES, "all"), "--faults")
    return [n for n in FAULT_NAMES if "all" in items or n in items]


def plan_faults(faults: list[str], transports: list[str]) -> list[tuple[Fault, str]]:
    """The fault matrix: (fault, transport) for every broker transport (in the order given)
    and every fault chosen; embedded is skipped (the experiments need a broker)."""
    brokers = [t for t in transports if t in BROKERS]
    if not brokers:
        raise ConfigError(f"--faults: the fault matrix runs over a broker only "
                          f"({', '.join(BROKERS)}); add --transports nats,redis")
    chosen = [f for f in FAULTS if f.name in faults]
    if not chosen:
        raise ConfigError("--faults: nothing to run")
    return [(f, t) for t in brokers for f in chosen]


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


def run_case(case: Case, transport: str, profile: str, scenarios: Path, out_dir: Path,
             broker_url: str | None = None) -> CaseResult:
    """Run one case (a Locust subprocess; over a broker with its own serve process)."""
    seconds = case.seconds[profile]
    report_dir = out_dir / f"{case.name}-{transport}"
    report_dir.mkdir(parents=True, exist_ok=True)
    cmd = case_command(case, transport, seconds, scenarios, report_dir, broker_url)
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
    from catga_bench.processes.brokers import BrokerProcess, BrokerStartError

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


# --------------------------------------------------------------------------- fault matrix
#: the cell figures (CaseResult.figures key -> the load_report probe's figures key)
FAULT_FIGURES = {
    "lost_qos0": "lost_by_qos.0", "lost_qos1": "lost_by_qos.1", "lost_qos2": "lost_by_qos.2",
    "duplicates_qos2": "duplicates_by_qos.2", "rejected": "rejected",
    "p99_ms": "latency_ms.p99", "breaker_opened": "breaker.opened",
    "breaker_closed": "breaker.closed",
}


@dataclass
class FaultJudgement:
    """A fault cell judged from its chaos run: see :func:`judge_fault_cell`."""

    status: str  # PASS | FAIL | ERROR
    verdict: str
    failed_targets: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    slo: list[dict[str, Any]] = field(default_factory=list)


def _label(entry: dict[str, Any]) -> str:
    a = entry.get("activity") or {}
    return str(a.get("name") or a.get("type") or "?")


def _exception(entry: dict[str, Any]) -> str:
    return "".join(entry.get("exception") or []).strip()


def _load_report_entry(journal: dict[str, Any]) -> dict[str, Any] | None:
    after: dict[str, Any] = (journal.get("steady_states") or {}).get("after") or {}
    probes: list[dict[str, Any]] = after.get("probes") or []
    return next((e for e in probes if (e.get("activity") or {}).get("type") == "load_report"),
                None)


def judge_fault_cell(code: int | None, journal: dict[str, Any] | None,
                     log_tail: str) -> FaultJudgement:
    """Judge one chaos run (pure: its exit code, its journal, the tail of its log).

    Exit 0 and status ``completed`` -> PASS; exit 1 and status ``failed`` (a probe missed,
    or the after steady state deviated) -> FAIL; anything else (aborted, interrupted, a
    timeout (``code`` None), no journal) -> ERROR. ``slo`` has one row per target judged
    (``name``, ``limit``, ``value``, ``passed``): the ``load_report`` probe's checks, its
    recovery (``recovery``), the other steady-state probes before and after and the method's
    probes, and the rollbacks; ``failed_targets`` names the rows that did not pass."""
    if journal is None:
        what = "timed out" if code is None else f"exit {code}"
        return FaultJudgement("ERROR", f"no journal ({what}): {log_tail}")
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    lr = _load_report_entry(journal)
    out = lr.get("output") if lr is not None else None
    if isinstance(out, dict):
        figs = out.get("figures") or {}
        figures = {k: figs.get(src) for k, src in FAULT_FIGURES.items()}
        for c in out.get("checks") or []:
            rows.append({"name": str(c.get("path")), "limit": c.get("expected"),
                         "value": c.get("actual"), "passed": bool(c.get("passed"))})
        rec = out.get("recovery")
        if isinstance(rec, dict):
            figures["recovered_after_s"] = rec.get("recovered_after_s")
            figures["recover_within_s"] = rec.get("within_s")
            rows.append({"name": "recovery", "limit": rec.get("within_s"),
                         "value": rec.get("recovered_after_s"),
                         "passed": bool(rec.get("passed"))})
    elif lr is not None:  # the probe raised (no report, no timeline, ...)
        rows.append({"name": _label(lr), "limit": None, "value": _exception(lr) or None,
                     "passed": bool(lr.get("tolerance_met"))})
    states = journal.get("steady_states") or {}
    probes = [p for phase in ("before", "after") for p in (states.get(phase) or {}).get(
        "probes") or [] if p is not lr]
    probes += [e for e in journal.get("run") or []
               if (e.get("activity") or {}).get("kind") == "probe"]
    for p in probes:
        if (p.get("activity") or {}).get("type") == "load_report" and p.get("status") == "skipped":
            continue  # before: recorded as skipped, judged after
        rows.append({"name": _label(p), "limit": True, "value": p.get("tolerance_met"),
                     "passed": bool(p.get("tolerance_met"))})
    for rb in journal.get("rollbacks") or []:
        rows.append({"name": _label(rb), "limit": "succeeded", "value": rb.get("status"),
                     "passed": rb.get("status") != "failed"})
    failed = list(dict.fromkeys(r["name"] for r in rows if not r["passed"]))
    status = journal.get("status")
    deviated = " (deviated)" if journal.get("deviated") else ""
    if code == 0 and status == "completed":
        return FaultJudgement("PASS", f"completed: {len(rows)} targets met", failed, figures,
                              rows)
    if code == 1 and status == "failed":
        verdict = f"failed{deviated}" + (f": missed {', '.join(failed)}" if failed else "")
        return FaultJudgement("FAIL", verdict, failed, figures, rows)
    why = (journal.get("environment") or {}).get("error") or next(
        (f"{_label(e)}: {_exception(e)}" for e in journal.get("run") or []
         if e.get("status") == "failed" and _exception(e)), None)
    what = "timed out" if code is None else f"exit {code}"
    return FaultJudgement("ERROR", f"{status or 'no status'}{deviated} ({what}): "
                                   f"{str(why).strip() if why else log_tail}",
                          failed, figures, rows)


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


#: chaos runs in progress (stopped by main() on Ctrl-C when cells run in worker threads)
_LIVE: set[subprocess.Popen[bytes]] = set()


def schedule_faults(fault_runs: list[tuple[Fault, str]],
                    jobs: int) -> list[list[tuple[int, Fault, str]]]:
    """Waves of (index in ``fault_runs``, fault, transport) to run concurrently: each
    exclusive cell alone, the others ``jobs`` at a time, in plan order."""
    if jobs < 1:
        raise ConfigError(f"--jobs: must be >= 1, got {jobs}")
    waves: list[list[tuple[int, Fault, str]]] = []
    shared: list[tuple[int, Fault, str]] = []
    for i, (fault, transport) in enumerate(fault_runs):
        if fault.exclusive or jobs == 1:
            waves.append([(i, fault, transport)])
        else:
            shared.append((i, fault, transport))
    waves += [shared[k:k + jobs] for k in range(0, len(shared), jobs)]
    return waves


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


def fault_key_figures(r: CaseResult) -> str:
    """The figures of a fault row: losses per QoS (QoS 0 only reported), QoS 2 duplicates,
    recovery, and the breaker (handler_outage) or rejections and P99 (overload_10x)."""
    f = r.figures
    if not f:
        return "-"
    parts = [f"QoS0 lost {_fmt(f.get('lost_qos0'))} (reported)",
             f"QoS1 lost {_fmt(f.get('lost_qos1'))}",
             f"QoS2 lost {_fmt(f.get('lost_qos2'))} dup {_fmt(f.get('duplicates_qos2'))}"]
    if "recovered_after_s" in f:
        back = f["recovered_after_s"]
        parts.append(f"back after {_fmt(back, ' s')}" if back is not None
                     else f"not back within {_fmt(f.get('recover_within_s'), ' s')}")
    name = r.case.removeprefix("fault:")
    if name == "handler_outage":
        parts.append(f"breaker opened {_fmt(f.get('breaker_opened'))} "
                     f"closed {_fmt(f.get('breaker_closed'))}")
    if name == "overload_10x":
        parts += [f"rejected {_fmt(f.get('rejected'))}", f"p99 {_fmt(f.get('p99_ms'), ' ms')}"]
    return ", ".join(parts)


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}{unit}"
    return f"{v:,}{unit}" if isinstance(v, int) else f"{v}{unit}"


def _key_figures(r: CaseResult) -> str:
    if r.case.startswith("fault:"):
        return fault_key_figures(r)
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
        faults = parse_faults(args.faults) if args.faults is not None else None
        # --faults without --only: only the fault matrix
        runs = plan(only, transports) if faults is None or only is not None else []
        fault_runs = plan_faults(faults, transports) if faults is not None else []
        schedule_faults(fault_runs, args.jobs)  # checks --jobs
        scenarios = _scenario_dir(args.scenarios) if runs else Path()
        experiments = _experiments_dir(args.experiments) if fault_runs else Path()
    except ConfigError as exc:
        sys.stderr.write(f"catga-bench gate: error: {exc}\n")
        return EXIT_USAGE
    out_dir = Path(args.report_dir or f"reports/gate-{time.strftime('%Y%m%d-%H%M%S')}")
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    seeded = f"; seeded defects: {', '.join(sorted(defects))}" if defects else ""
    total = len(runs) + len(fault_runs)
    matrix = f", {len(fault_runs)} fault cell(s)" if faults is not None else ""
    print(f"catga-bench gate: {len(runs)} case(s){matrix}, profile {args.profile}, transports "
          f"{', '.join(transports)}{seeded}; reports in {out_dir}/", flush=True)
    started = time.monotonic()
    results: list[CaseResult] = []

    def _done(index: int, name: str, transport: str, r: CaseResult) -> None:
        results.append(r)
        detail = r.verdict if r.status != "PASS" else _key_figures(r)
        print(f"[{index}/{total}] {name} on {transport}: {r.status} in "
              f"{r.wall_s:.1f} s: {detail}", flush=True)

    for index, (case, transport) in enumerate(runs, 1):
        print(f"[{index}/{total}] {case.name} on {transport} "
              f"({case.seconds[args.profile]} s) ...", flush=True)
        _done(index, case.name, transport,
              _run_isolated(case, transport, args.profile, scenarios, out_dir))
    fault_results: dict[int, CaseResult] = {}
    lock = threading.Lock()

    def _cell(i: int, fault: Fault, transport: str) -> None:
        index, name = len(runs) + 1 + i, f"fault:{fault.name}"
        print(f"[{index}/{total}] {name} on {transport} "
              f"({fault_seconds(fault, args.profile, experiments)} s) ...", flush=True)
        r = run_fault_cell(fault, transport, args.profile, experiments, out_dir)
        with lock:
            fault_results[i] = r
            _done(index, name, transport, r)

    try:
        for wave in schedule_faults(fault_runs, args.jobs):
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
    # the table and the JSON list cells in plan order, whatever order they finished in
    results[len(runs):] = [fault_results[i] for i in sorted(fault_results)]
    code = _overall(results)
    print_table(results)
    wall = round(time.monotonic() - started, 1)
    summary = {EXIT_PASS: "PASS: every case passed", EXIT_FAIL: "FAIL: a case missed a target",
               EXIT_ENVIRONMENT: "ERROR: a case could not run"}[code]
    print(f"catga-bench gate: {summary} ({wall} s)", flush=True)
    if args.json:
        doc = {"profile": args.profile, "transports": transports,
               "faults": faults or [], "defects": sorted(defects), "exit_code": code,
               "passed": code == EXIT_PASS, "wall_s": wall, "report_dir": str(out_dir),
               "cases": [r.to_dict() for r in results]}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
