"""``catga-bench bench-http``: the open-model HTTP generator against a ``wrk`` floor measured
in the same run.

One command, one service: the AsyncAPI document's ``x-catga-bench.process`` is started on a free
port (its ``HTTP_PORT`` env overridden, ``--host http://127.0.0.1:PORT`` given to every side),
then

1. ``wrk`` (closed model, as fast as the service answers) POSTs the document's payload
   (the ``x-catga-bench.payload`` template rendered for seq 1, as JSON, with the ``x-catga-bench
   .http`` headers and the input message's correlation header) for ``--seconds``: the floor,
   in requests/s, and its P99;
2. for each ``--rates`` value, ``python -m locust -f scenarios/http_orders.py --headless
   --rate R --sut-running`` (open model: sent on schedule, latency from the intended send time)
   on the same service; its report.json gives the achieved rate, P99 and errors, its exit code
   the verdict (0: the scenario's SLO met).

The table shows each rate's achieved/floor ratio and the highest rate that passed. The service
is stopped at the end, always (Ctrl-C included). Exit 0 when at least one rate passed, 1 when
none did, 2 on a usage error, 3 when the environment failed (``wrk`` missing, NATS unreachable,
the service not ready).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from catga_bench.bundled import resource_dir
from catga_bench.errors import EXIT_ENVIRONMENT, EXIT_FAIL, EXIT_PASS, EXIT_USAGE, ConfigError
from catga_bench.processes.locust import locust_command
from catga_bench.targets.base import TargetUnavailable
from catga_bench.targets.blackbox import pointer_set, render
from catga_bench.workload.asyncapi import SutSpec, load_spec
from catga_bench.workload.http import http_input

#: the Node example's HTTP document and the scenario driving it (shipped with the package)
DEFAULT_SPEC = resource_dir("examples") / "order-service-node" / "http.asyncapi.yaml"
SCENARIO = resource_dir("scenarios") / "http_orders.py"
#: the Locust runs' working directory: the folder holding catga_bench (``python -m locust``
#: imports it from there in a checkout that is not installed)
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
PROG = "catga-bench bench-http"
#: the brokers' usual addresses (as ``--nats-url`` / ``--redis-url`` default to in Locust)
DEFAULT_URLS = {"nats": "nats://127.0.0.1:4222", "redis": "redis://127.0.0.1:6379"}
#: wrk's threads and connections (a 2-core machine: two threads keep the client off the
#: service's core as much as they can; 64 connections keep the service busy)
WRK_THREADS, WRK_CONNECTIONS = 2, 64
#: the line the lua script's ``done`` prints, then a JSON object
WRK_MARK = "CATGA-BENCH-WRK "
#: Locust's users and spawn rate for each step (the generator is one open-model process)
USERS = 10

_LUA = """\
wrk.method = {method}
wrk.body = {body}
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{mark}{{"requests": %d, "duration_us": %d, "p99_us": %d, "non_2xx": %d, '
    .. '"socket_errors": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(99.0), e.status,
    e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass
class Floor:
    """What ``wrk`` measured: requests/s, P99 and the failures it counted."""

    tool: str
    rps: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    command: list[str]


@dataclass
class RateRow:
    """One Locust step: offered and achieved rate, P99, errors, exit code, ratio to the floor."""

    offered: float
    achieved: float | None
    p99_ms: float | None
    errors: dict[str, int]
    exit_code: int
    passed: bool
    ratio: float | None
    report: str


def _lua_string(value: str) -> str:
    """``value`` as a Lua string literal (JSON escapes are valid Lua escapes for ASCII)."""
    return json.dumps(value, ensure_ascii=True)


def wrk_script(spec: SutSpec) -> str:
    """The lua script that makes ``wrk`` send the document's input request: its method, the
    payload template rendered for seq 1 as JSON, the ``x-catga-bench.http`` headers, and the
    correlation header when the input message carries its id in one (a fixed id: the service
    echoes it, nobody checks it here).

    Raises:
        ConfigError: the document has no http server, or its headers are not headers.
    """
    target = http_input(spec)
    op = spec.input_operation()
    payload: Any = render(spec.bench.payload, 1)
    corr = op.messages[0].correlation if op.messages else None
    headers = dict(target.options.headers)
    if corr is not None and corr.where == "header":
        headers[corr.path] = "bench-1"
    elif corr is not None and isinstance(payload, dict):
        pointer_set(payload, corr.path, "bench-1")
    if target.body:
        headers.setdefault("Content-Type", "application/json")
    lines = "\n".join(f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}"
                      for k, v in headers.items())
    body = json.dumps(payload, separators=(",", ":")) if target.body else ""
    return _LUA.format(method=_lua_string(target.method), body=_lua_string(body),
                       headers=lines, mark=WRK_MARK)


def run_wrk(wrk: str, url: str, script: Path, seconds: int) -> Floor:
    """``wrk`` against ``url`` for ``seconds`` with ``script``; its summary line parsed.

    Raises:
        RuntimeError: wrk failed or printed no summary (its output quoted).
    """
    cmd = [wrk, f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s",
           "-s", str(script), url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                          check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(WRK_MARK):
            s = json.loads(line[len(WRK_MARK):])
            duration_s = max(s["duration_us"], 1) / 1e6
            return Floor(tool="wrk", rps=round(s["requests"] / duration_s, 1),
                         p99_ms=round(s["p99_us"] / 1000.0, 3), requests=s["requests"],
                         non_2xx=s["non_2xx"], socket_errors=s["socket_errors"], command=cmd)
    raise RuntimeError(f"wrk exited {proc.returncode} without a summary:\n"
                       f"{(proc.stdout + proc.stderr)[-2000:]}")


def run_rate(rate: int, seconds: int, host: str, spec_path: Path, report_dir: Path,
             floor_rps: float, nats_url: str | None) -> RateRow:
    """One Locust step at ``rate`` messages/s on the running service, read from its report."""
    extra = ["--host", host, "--rate", str(rate), "--sut-running", "--sut-spec",
             str(spec_path.resolve())]
    if nats_url:
        extra += ["--nats-url", nats_url]
    cmd = locust_command(SCENARIO, users=USERS, run_time_s=seconds, report_dir=report_dir,
                         extra=extra)
    log = report_dir.parent / f"locust-r{rate}.log"
    with open(log, "wb") as out:
        code = subprocess.run(cmd, cwd=PACKAGE_ROOT, stdout=out, stderr=subprocess.STDOUT,
                              timeout=seconds + 180, check=False).returncode
    path = report_dir / "report.json"
    report: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    achieved = report.get("achieved_rate")
    p99 = (report.get("latency_ms") or {}).get("p99")
    return RateRow(offered=float(rate), achieved=achieved, p99_ms=p99,
                   errors=dict(report.get("errors") or {}), exit_code=code, passed=code == 0,
                   ratio=round(achieved / floor_rps, 3) if achieved and floor_rps else None,
                   report=str(path if path.exists() else log))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_nats(url: str) -> None:
    """Raise TargetUnavailable when nothing listens at the NATS ``url`` (one line)."""
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222),
                                      timeout=2.0):
            return
    except OSError as exc:
        raise TargetUnavailable(f"NATS at {url} cannot be reached ({exc}); the service needs "
                                "it: start nats-server or give --nats-url") from None


def print_results(console: Console, floor: Floor, rows: list[RateRow], seconds: int) -> None:
    """The floor line, one table row per rate, and the highest rate that passed."""
    console.print(f"floor: wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} (closed model, same payload, "
                  f"{seconds} s): [bold]{floor.rps:,.0f} req/s[/bold], P99 {floor.p99_ms:.2f} ms"
                  + (f", {floor.non_2xx} non-2xx" if floor.non_2xx else "")
                  + (f", {floor.socket_errors} socket errors" if floor.socket_errors else ""))
    table = Table(title=f"open-model HTTP generator (locust scenarios/http_orders.py, "
                        f"{seconds} s/rate) vs the wrk floor", title_justify="left")
    for col in ("offered req/s", "achieved req/s", "P99 ms", "errors", "exit", "passed",
                "achieved/wrk"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r.offered:,.0f}", "-" if r.achieved is None else f"{r.achieved:,.0f}",
            "-" if r.p99_ms is None else f"{r.p99_ms:.2f}",
            str(sum(r.errors.values())), str(r.exit_code),
            "[green]yes[/green]" if r.passed else "[red]no[/red]",
            "-" if r.ratio is None else f"{r.ratio:.2f}x")
    console.print(table)
    best = highest_passed(rows)
    console.print("highest rate that passed: "
                  + ("[red]none[/red]" if best is None else f"[bold]{best:,.0f} req/s[/bold]"))
    console.print("  [dim]note: passed = the scenario's SLO met (exit 0: P99 < 100 ms from the "
                  "intended send time, no errors). wrk is closed-model (it waits for each "
                  "answer), so its P99 hides queueing; the ratio compares throughput only.[/dim]")


def highest_passed(rows: list[RateRow]) -> float | None:
    """The highest offered rate whose step passed, or None."""
    passed = [r.offered for r in rows if r.passed]
    return max(passed) if passed else None


def _rates(text: str) -> list[int]:
    try:
        rates = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}"
                                         ) from None
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError(f"expected positive rates, got {text!r}")
    return rates


def build_parser() -> argparse.ArgumentParser:
    """The options of ``catga-bench bench-http``."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="The open-model HTTP generator (scenarios/http_orders.py) against a wrk "
                    "floor measured in the same run on the same service, started from the "
                    "AsyncAPI document's x-catga-bench.process on a free port. Exit 0 when a "
                    "rate passed, 1 when none did, 3 when the environment failed.",
    )
    p.add_argument("--spec", type=Path, default=DEFAULT_SPEC, metavar="FILE",
                   help="the service's AsyncAPI document (default: the Node example's "
                        "http.asyncapi.yaml)")
    p.add_argument("--rates", type=_rates, default=[5000, 10000, 15000], metavar="R,R,...",
                   help="offered rates, requests/s (default: 5000,10000,15000)")
    p.add_argument("--seconds", type=int, default=15, help="seconds of wrk and of each rate "
                   "(default: %(default)s)")
    p.add_argument("--nats-url", default=None, metavar="URL",
                   help=f"NATS for the service (default: {DEFAULT_URLS['nats']})")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the figures")
    p.add_argument("--keep", action="store_true", help="keep the run folder (logs, reports)")
    return p


def _start_service(spec: SutSpec, port: int, nats_url: str, log_dir: Path) -> Any:
    """The document's process with ``HTTP_PORT`` set to ``port``, started and ready."""
    from catga_bench.targets.sut_process import SutProcess, effective_urls, log_name

    assert spec.bench.process is not None
    host = f"http://127.0.0.1:{port}"
    process = spec.bench.process.model_copy(
        update={"env": {**spec.bench.process.env, "HTTP_PORT": str(port)}})
    if any("{nats_url}" in v for v in process.env.values()):
        check_nats(nats_url)
    urls = effective_urls(spec, nats_url=nats_url, http_url=host)
    urls["redis_url"] = urls["redis_url"] or DEFAULT_URLS["redis"]
    sut = SutProcess(process, urls, log_dir, log_name(spec.title), spec_path=spec.path)
    return sut.start()


def run(args: argparse.Namespace, console: Console, work: Path, wrk: str) -> dict[str, Any]:
    """Start the service, measure the floor and every rate, stop the service; the figures.

    Raises:
        TargetUnavailable, ConfigError, RuntimeError: as :func:`main` maps them.
    """
    spec = load_spec(args.spec)
    if spec.bench.process is None:
        raise ConfigError(f"{args.spec}: /x-catga-bench/process: missing; bench-http starts "
                          "the service itself")
    nats_url = args.nats_url or os.environ.get("CATGA_NATS_URL") or DEFAULT_URLS["nats"]
    script = work / "post.lua"
    script.write_text(wrk_script(spec))
    port = free_port()
    host = f"http://127.0.0.1:{port}"
    url = http_input(spec, host).url
    sut = None
    try:
        sut = _start_service(spec, port, nats_url, work)
        console.print(f"service: {sut.command} ready in {sut.ready_s:.1f} s at {host} "
                      f"(log {sut.log_path})")
        console.print(f"wrk: {args.seconds} s on {url} ...")
        floor = run_wrk(wrk, url, script, args.seconds)
        rows = []
        for rate in args.rates:
            console.print(f"locust: {rate:,} req/s for {args.seconds} s ...")
            rows.append(run_rate(rate, args.seconds, host, spec.path, work / f"r{rate}",
                                 floor.rps, args.nats_url))
            if not sut.running:
                raise TargetUnavailable(f"the service exited during the {rate}/s step "
                                        f"(exit {sut.exit_code}); log: {sut.log_path}")
    finally:
        if sut is not None:
            sut.stop()
    print_results(console, floor, rows, args.seconds)
    best = highest_passed(rows)
    return {"spec": str(spec.path), "url": url, "seconds": args.seconds,
            "floor": asdict(floor), "rates": [asdict(r) for r in rows],
            "highest_passed": best}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``catga-bench bench-http``; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.seconds < 1:
        sys.stderr.write(f"{PROG}: error: --seconds: at least 1, got {args.seconds}\n")
        return EXIT_USAGE
    wrk = shutil.which("wrk")
    if wrk is None:
        print(f"{PROG}: wrk is not installed: apt-get install -y wrk")
        return EXIT_ENVIRONMENT
    console = Console(width=None if sys.stdout.isatty() else 120)
    work = Path(tempfile.mkdtemp(prefix="catga-bench-http-"))
    try:
        result = run(args, console, work, wrk)
    except ConfigError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return EXIT_USAGE
    except (TargetUnavailable, RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n    (logs kept in {work})\n")
        return EXIT_ENVIRONMENT
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted (the service was stopped; logs in {work})\n")
        return 130
    if args.keep:
        console.print(f"run folder: {work}")
    else:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return EXIT_PASS if result["highest_passed"] is not None else EXIT_FAIL
