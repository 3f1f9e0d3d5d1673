"""Locust integration: one :class:`Harness` per Locust process, wired to Locust's events.

* local run: the process generates load on its embedded core and judges it itself;
* distributed run (``--processes N`` or ``--master`` + ``--worker``): each worker generates its
  share; when the test stops the master asks every worker for its payload (histograms, ledger,
  timeline) with Locust's custom messages, merges them and judges the merged figures.

The gate's verdict becomes Locust's exit code on ``quitting``.
"""

from __future__ import annotations

import gc
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gevent
from locust import events
from locust.env import Environment
from locust.runners import LocalRunner, MasterRunner, WorkerRunner
from pydantic import ValidationError

from catga_bench.errors import EXIT_ENVIRONMENT, EXIT_USAGE, ConfigError
from catga_bench.generator.generator import Generator
from catga_bench.generator.payload import RunPayload
from catga_bench.harness.breach_watch import BreachWatch
from catga_bench.harness.bridge import BridgeError, LoopThread
from catga_bench.harness.locust_stats import log_successes
from catga_bench.harness.once import Once
from catga_bench.harness.options import RunOptions, add_arguments, parse_options
from catga_bench.harness.systems import SystemUnderTest
from catga_bench.judge.breach import BreachLimits
from catga_bench.judge.gate import RunFacts, build_report
from catga_bench.targets.base import Target, TargetUnavailable
from catga_bench.targets.defects import defects_from_env
from catga_bench.workload.plan import RunPlan
from core.transport.base import TransportError

if TYPE_CHECKING:
    from catga_bench.targets.sut_process import SutProcess
    from catga_bench.workload.scenario import Scenario

log = logging.getLogger("catga.bench")
MSG_FINISH = "catga_finish"
MSG_PAYLOAD = "catga_payload"
REQUEST_TYPE = "catga"
PROGRESS_EVERY_S = 5.0


def _fail_usage(message: str) -> None:
    sys.stderr.write(f"catga-bench: error: {message}\n")
    sys.stderr.flush()
    os._exit(EXIT_USAGE)  # Locust would turn SystemExit in an event listener into a traceback


class Harness:
    """Per-process state: options, the loop thread, the generator, and the verdict."""

    def __init__(self, environment: Environment, options: RunOptions, scenario: Scenario,
                 scenario_name: str) -> None:
        self.env = environment
        self.options = options
        self.base_scenario = scenario
        base = scenario.with_overrides(rate=options.rate, qos=options.qos, sut=options.sut,
                                       sut_spec=options.sut_spec)
        self.scenario = base
        self.scenario_name = scenario_name
        self.targets = base.slo.merged(options.slo_overrides)
        self.bridge: LoopThread | None = None
        self.generator: Generator | None = None
        self.started_at = time.time()
        self.steady_at: float | None = None
        self.payloads: dict[str, dict[str, Any]] = {}
        self.report: dict[str, Any] | None = None
        self.exit_code: int | None = None
        self._once = Once(lambda: self._finish())  # a second finish() waits for the first
        self.start_error: str | None = None
        self._producers = 0
        self._metrics_server: Any = None
        #: the service the harness starts itself (x-catga-bench.process), in a local run or
        #: on the master; None otherwise
        self.sut = SystemUnderTest(self)
        self._report_dir: Path | None = None
        self.breach_watch: BreachWatch | None = None

    # ----------------------------------------------------------------- roles
    @property
    def is_master(self) -> bool:
        return isinstance(self.env.runner, MasterRunner)

    @property
    def is_worker(self) -> bool:
        return isinstance(self.env.runner, WorkerRunner)

    @property
    def generates(self) -> bool:
        """Local and worker processes generate load; a master only aggregates."""
        return not self.is_master

    # ----------------------------------------------------------------- load side
    def ensure_started(self) -> None:
        """Start the loop thread and the generator with its target (once, in a generating
        process)."""
        if self.generator is not None or self.start_error is not None:
            return

        if self.is_worker:  # the master's options (--qos, --handlers, ...) arrive with "spawn"
            try:
                self.options = parse_options(self.env.parsed_options)
            except ConfigError as exc:
                self.start_error = f"options from the master are invalid: {exc}"
                return
            self.scenario = self.base_scenario.with_overrides(sut=self.options.sut,
                                                               sut_spec=self.options.sut_spec,
                                                               rate=self.options.rate,
                                                               qos=self.options.qos)
        try:
            self.bridge = LoopThread()
            self.bridge.start()
            plan = RunPlan.of(self.scenario, self.options.handlers)
            self.purge_input(plan)  # before the service starts: no leftovers come out
            self.start_sut()  # before the target opens its connections
            generator = Generator(plan, self._target(plan))

            async def create() -> Generator:
                await generator.start()
                return generator

            embedded = self.options.transport == "embedded"
            self.generator = self.bridge.call(create(), timeout_s=30 if embedded else 60)
        except (BridgeError, ValueError) as exc:
            self.start_error = f"the embedded core could not start: {exc}"
            log.error(self.start_error)
            return
        except (TransportError, TargetUnavailable) as exc:  # broker down, no core: exit 3
            self._environment_failure(exc)
            return
        self.started_at = time.time()
        # Locust, the generator and its histograms live for the whole run: keep them out of the
        # cyclic collector's full passes (each rescans the whole heap: tens of ms of stall)
        gc.collect()
        gc.freeze()
        if self.options.metrics_port:
            self._start_metrics()
        gevent.spawn(self._pump_logs_forever)
        run_time_s = getattr(self.env.parsed_options, "run_time", None)
        if run_time_s and not self.is_worker:
            # the schedule ends at -t on the loop itself: with the loop saturated, Locust's stop
            # (on the gevent thread, which shares the GIL) was seen to come 10-17 s late, and
            # the load ran on meanwhile (a 20 s trial sent for 37 s)
            self.bridge.call_later(float(run_time_s), self.generator.end_schedule)
        if self.options.stop_on_breach_s and not self.is_worker:
            self._watch_breaches(self.options.stop_on_breach_s)

    def _watch_breaches(self, seconds: int) -> None:
        """Quit the run after ``seconds`` of sustained SLO breach (harness/breach_watch.py)."""
        limits = BreachLimits(self.targets.p99_ms, self.targets.max_error_ratio)
        self.breach_watch = watch = BreachWatch(seconds, limits)
        runner = self.env.runner
        generator = self.generator
        if runner is None or generator is None:
            return
        bridge = self.bridge

        def stop() -> None:
            if bridge is not None:  # end the load on the loop at once (see ensure_started)
                bridge.call_soon(generator.end_schedule)
            runner.quit()

        gevent.spawn(watch.watch, lambda: generator.timeline.rows, stop,
                     lambda: not self._once.started)

    def _environment_failure(self, exc: Exception) -> None:
        """No verdict (exit 3): print the reason (one line, then any indented detail such as a
        service's last log lines), keep its first line for the report, and quit the run."""
        self.start_error = str(exc).split("\n", 1)[0]
        sys.stderr.write(f"catga-bench: error: {exc}\n")
        sys.stderr.flush()
        runner = self.env.runner
        if runner is not None:
            gevent.spawn_later(0.1, runner.quit)

    # ----------------------------------------------------------------- the service's process
    # the system under test: built, purged, started and stopped by SystemUnderTest
    def prepare_sut(self, plan: RunPlan) -> None:
        self.sut.prepare(plan)

    def purge_input(self, plan: RunPlan) -> None:
        self.sut.purge(plan)

    def start_sut(self) -> None:
        self.sut.start()

    def stop_sut(self) -> None:
        self.sut.stop()

    @property
    def sut_process(self) -> SutProcess | None:
        return self.sut.process

    def _target(self, plan: RunPlan) -> Target:
        return self.sut.target(plan)

    def _start_metrics(self) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        from core.metrics import CatgaCollector

        assert self.generator is not None
        from catga_bench.generator.metrics import GeneratorCollector

        registry = CollectorRegistry()
        core = getattr(self.generator.target, "core", None)  # remote: the core exports its own
        if core is not None:
            registry.register(CatgaCollector(core.mediator, core.lag))
        registry.register(GeneratorCollector(self.generator, self.targets.model_dump()))
        first = self.options.metrics_port  # taken (another worker here): the next free one
        host = os.environ.get("CATGA_METRICS_HOST", "127.0.0.1")  # 0.0.0.0 in containers
        for port in range(first, first + 64):
            try:
                self._metrics_server = start_http_server(port, host, registry)
                log.info("catga-bench: metrics on http://%s:%d/metrics", host, port)
                return
            except OSError:
                continue
        log.error("catga-bench: no free port for /metrics from %d", first)

    def _pump_logs_forever(self) -> None:
        next_progress = time.monotonic() + PROGRESS_EVERY_S
        while self.bridge is not None and self.bridge.running and not self._once.started:
            self.bridge.pump_logs()
            if time.monotonic() >= next_progress:
                next_progress += PROGRESS_EVERY_S
                self._log_progress()
            gevent.sleep(0.5)

    def _log_progress(self) -> None:
        """One line of progress from the last full second (read across threads: plain ints)."""
        generator = self.generator
        if generator is None:
            return
        from catga_bench.generator.timeline import Timeline

        second = int(time.time()) - 1
        row = generator.timeline.rows.get(second)
        if row is None:
            return
        probe = Timeline()
        try:  # the loop thread may still be adding a late completion to this row
            probe.rows[second] = {**row, "lat": dict(row["lat"])}
        except RuntimeError:
            return
        p99 = probe.series()["p99_ms"][0]
        log.info(
            "catga-bench: %5.0f s  offered %s msg/s  sent %d  completed %d/s  p99 %s ms  "
            "errors %d  rejected %d  timeouts %d  breakers open %d  in flight %d",
            time.time() - self.started_at, f"{generator.total_rate:,.0f}",
            sum(s.ledger.sent for s in generator.streams), row["completed"],
            "-" if p99 is None else f"{p99:.2f}", row["errors"], row["rejected"],
            row["timeouts"], row["breaker_open"], row["in_flight"],
        )

    def per_user_rate(self) -> float:
        opts = self.env.parsed_options
        share = getattr(opts, "catga_user_rate", None)
        if share:
            return float(share)
        users = getattr(opts, "num_users", None) or getattr(self.env.runner,
                                                             "target_user_count", 1) or 1
        return self.scenario.rate / max(1, int(users))

    def add_producer(self) -> int:
        self.ensure_started()
        self._producers += 1
        producer = self._producers
        if self.generator is not None and self.bridge is not None and not self._once.started:
            self.bridge.call_soon(self.generator.set_producer_rate, producer, self.per_user_rate())
        return producer

    def remove_producer(self, producer: int) -> None:
        if self.generator is not None and self.bridge is not None and self.bridge.running:
            self.bridge.call_soon(self.generator.set_producer_rate, producer, 0.0)

    def pump_completions(self, limit: int = 50_000) -> None:
        """Feed Locust's statistics (web UI, CSV) from the completions queue: successes per
        name in one step, failures as one ``request`` event each
        (:mod:`catga_bench.harness.locust_stats`: per-message events starved the load's
        loop). Locust rounds response times; the gate uses the HDR histograms, not these."""
        if self.generator is None:
            return
        q = self.generator.completions
        fire = self.env.events.request.fire
        ok_ms: dict[str, list[float]] = {}
        n = 0
        while q and n < limit:
            name, latency_ms, ok, code = q.popleft()
            if ok:
                ok_ms.setdefault(name, []).append(latency_ms)
            else:
                fire(request_type=REQUEST_TYPE, name=name, response_time=latency_ms,
                     response_length=0, exception=_Failure(code), context={})
            n += 1
        for name, latencies in ok_ms.items():
            log_successes(self.env.stats, REQUEST_TYPE, name, latencies)

    def collect_local_payload(self) -> dict[str, Any]:
        """Stop generating, drain, and return this process's payload (blocking greenlet)."""
        if self.start_error is not None:
            return {"error": self.start_error}
        if self.generator is None or self.bridge is None:
            return {"error": "no user was started in this load generator"}
        try:
            payload = self.bridge.call(self.generator.finish(), timeout_s=60)
        except Exception as exc:  # the loop died or hung: an environment failure
            return {"error": f"the embedded core did not finish: {exc!r}"}
        self.pump_completions(limit=10**9)
        self.bridge.pump_logs()
        return payload.to_dict()

    def shutdown(self) -> None:
        self.stop_sut()
        if self.bridge is not None:
            self.bridge.stop()

    # ----------------------------------------------------------------- judging side
    def finish(self) -> None:
        """Collect payloads (local, or from every worker), build the report, write it. A second
        caller (Locust's -t timer quitting while an early stop is still judging) waits for the
        first: the loop must not be stopped under the drain."""
        self._once()

    def _finish(self) -> None:
        stopped_at = time.time()
        env_failures: list[str] = []
        if self.is_master:
            runner = self.env.runner
            assert isinstance(runner, MasterRunner)
            expected = len(runner.clients)
            runner.send_message(MSG_FINISH, {"at": stopped_at})
            if self.start_error is not None:  # the service did not start: no run to wait for
                expected = 0
                env_failures.append(self.start_error)
            deadline = time.monotonic() + 90
            while len(self.payloads) < expected and time.monotonic() < deadline:
                gevent.sleep(0.05)
            if len(self.payloads) < expected:
                env_failures.append(f"only {len(self.payloads)} of {expected} load generators "
                                    "reported their measurements")
            payloads = list(self.payloads.values())
            workers = expected
        else:
            payloads = [self.collect_local_payload()]
            workers = 1
            self._let_locust_write_csv()
        self.stop_sut()  # after the drain: its exit code goes in the report
        good, failures = read_payloads(payloads)
        env_failures += failures
        merged = RunPayload.merge(good) if good else RunPayload()
        sut = self._sut_facts()
        facts = RunFacts(
            scenario=self.scenario_name,
            transport=self._report_transport(sut["kind"]),
            qos=self.scenario.qos,
            offered_rate=self.scenario.rate,
            started_at_s=self.started_at,
            steady_at_s=self.steady_at,
            stopped_at_s=stopped_at,
            workers=workers,
            environment_failures=env_failures,
            environment=_environment_facts(),
            sut=sut,
        )
        self.report = build_report(merged, facts, self.targets)
        if self.breach_watch is not None:
            self.breach_watch.annotate(self.report)
        self.exit_code = self.report["exit_code"]
        try:
            self.write_report()
        except Exception as exc:
            log.exception("catga-bench: could not write the report")
            self.report["verdict"] += f" (report not written: {exc})"
            self.exit_code = EXIT_ENVIRONMENT

    def _let_locust_write_csv(self) -> None:
        """With ``--csv``, yield to Locust's CSV writer for one of its cycles: it rewrites
        ``*_stats.csv`` every ``CSV_STATS_INTERVAL_SEC`` and only closes the files at shutdown,
        so the completions fed in by the final drain (the run's last second or so) would be
        missing from the file."""
        opts = self.env.parsed_options
        if opts is not None and getattr(opts, "csv_prefix", None):
            from locust.stats import CSV_STATS_INTERVAL_SEC

            gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.1)

    def _report_transport(self, kind: str) -> str:
        return self.sut.report_transport(kind)

    def _sut_facts(self) -> dict[str, Any]:
        return self.sut.facts()

    def report_dir(self) -> Path:
        """The run's report folder (``--report-dir``, else ``reports/<scenario>-<time>``),
        fixed at the first call: the service's log goes there before the report does."""
        if self._report_dir is None:
            self._report_dir = Path(self.options.report_dir or os.path.join(
                "reports", f"{self.scenario_name}-{time.strftime('%Y%m%d-%H%M%S')}"))
        return self._report_dir

    def write_report(self) -> None:
        from catga_bench.judge.report import write_reports

        assert self.report is not None
        paths = write_reports(self.report, self.report_dir(), self.options.report_formats)
        self.report_paths = paths
        log.info("catga-bench: report written to %s", paths.get("md", paths["json"]))

    def on_payload(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.payloads[str(msg.node_id)] = msg.data

    def on_finish_request(self, environment: Environment, msg: Any, **_: Any) -> None:
        payload = self.collect_local_payload()
        runner = environment.runner
        assert runner is not None
        runner.send_message(MSG_PAYLOAD, payload)


def read_payloads(shipped: list[dict[str, Any]]) -> tuple[list[RunPayload], list[str]]:
    """The generators' payloads as sent (``to_dict`` forms, or ``{"error": reason}``): the good
    ones read back, and a reason for each that failed or cannot be read."""
    good: list[RunPayload] = []
    failures: list[str] = []
    for p in shipped:
        if "error" in p:
            failures.append(str(p["error"]))
            continue
        try:
            good.append(RunPayload.from_dict(p))
        except ValidationError as exc:
            failures.append(f"a load generator sent an unreadable payload: {exc}")
    return good, failures


class _Failure(Exception):
    """Carries an error code into Locust's failure statistics."""


def _environment_facts() -> dict[str, Any]:
    import locust

    return {"python": platform.python_version(), "locust": locust.__version__,
            "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "argv": sys.argv[1:]}


# --------------------------------------------------------------------- wiring to Locust events
# One listener per Locust event, at module level (as Locust's plugin examples do); each finds
# the process's Harness on ``environment.catga`` and hands over to it.
_installed = False
_current: Harness | None = None
_scenario_lookup: Callable[[Environment], tuple[Scenario, str] | None] | None = None


def _harness_of(environment: Environment) -> Harness | None:
    return getattr(environment, "catga", None)


def _on_parser(parser: Any, **_: Any) -> None:
    add_arguments(parser)


def _on_init(environment: Environment, **_: Any) -> None:
    """Build this process's Harness from the locustfile's scenario and the options (a bad
    option or CATGA_BENCH_DEFECTS name is a usage error: exit 2)."""
    global _current
    found = _scenario_lookup(environment) if _scenario_lookup is not None else None
    if found is None:
        return
    scenario, name = found
    try:
        options = parse_options(environment.parsed_options)
        defects_from_env()  # an unknown CATGA_BENCH_DEFECTS name is a usage error (exit 2)
        harness = Harness(environment, options, scenario, name)
        plan = RunPlan.of(harness.scenario, options.handlers)  # a bad stream: usage error too
        if harness.scenario.sut == "http" and plan.spec is not None:  # a bad --host too
            from catga_bench.workload.http import http_input

            http_input(plan.spec, environment.host or None)
        harness.prepare_sut(plan)  # a placeholder with no URL: usage error
    except ConfigError as exc:
        _fail_usage(str(exc))
        return
    environment.catga = harness  # type: ignore[attr-defined]
    _current = harness
    runner = environment.runner
    opts = environment.parsed_options
    if opts is not None and getattr(opts, "num_users", None):
        opts.catga_user_rate = harness.scenario.rate / int(opts.num_users)
    if isinstance(runner, MasterRunner):
        runner.register_message(MSG_PAYLOAD, harness.on_payload)
        if opts is not None and not getattr(opts, "catga_run", ""):
            import uuid

            opts.catga_run = uuid.uuid4().hex[:8]  # shipped to workers with "spawn"
    elif isinstance(runner, WorkerRunner):
        runner.register_message(MSG_FINISH, harness.on_finish_request, concurrent=True)
    # Locust starts its -t timer right after this event with gevent.spawn_later, measured from
    # the hub's cached clock, which only moves when the hub runs: everything since the hub last
    # ran (importing the locustfile and this package: 0.7 s here, 1.6 s from a wheel without
    # bytecode, 2.4 s seen in CI) would be cut from the run (a -t 3s run sent for 0.6 s)
    gevent.get_hub().loop.update_now()


def _on_test_start(environment: Environment, **_: Any) -> None:
    harness = _harness_of(environment)
    if harness is None:
        return
    harness.started_at = time.time()
    if harness.generates:
        harness.ensure_started()
    elif harness.sut_process is not None:  # the master owns the one copy of the service
        try:
            harness.purge_input(RunPlan.of(harness.scenario, harness.options.handlers))
            harness.start_sut()
        except TargetUnavailable as exc:
            harness._environment_failure(exc)


def _on_spawned(user_count: int, **_: Any) -> None:
    if _current is not None and _current.steady_at is None:
        _current.steady_at = time.time()


def _on_stopping(environment: Environment, **_: Any) -> None:
    harness = _harness_of(environment)
    if harness is not None and not harness.is_worker:
        harness.finish()


def _on_quitting(environment: Environment, **_: Any) -> None:
    """Judge (if not yet), print the summary, and make the verdict Locust's exit code."""
    harness = _harness_of(environment)
    if harness is None:
        return
    if harness.is_worker:
        harness.shutdown()
        return
    if isinstance(environment.runner, LocalRunner | MasterRunner):
        harness.finish()  # judges, or waits for a judgement under way
    harness.shutdown()
    if harness.report is not None:
        _print_summary(harness)
    environment.process_exit_code = (
        harness.exit_code if harness.exit_code is not None else EXIT_ENVIRONMENT
    )


def _print_summary(harness: Harness) -> None:
    assert harness.report is not None
    try:
        from catga_bench.judge.report import print_summary

        print_summary(harness.report)
    except Exception:
        log.exception("catga-bench: could not print the summary")
        sys.stdout.write(f"catga-bench: {harness.report.get('verdict')}\n")
    paths = getattr(harness, "report_paths", {})
    if paths:
        sys.stdout.write(f"catga-bench: reports in {Path(paths['json']).parent}/\n")


def install(scenario_lookup: Callable[[Environment], tuple[Scenario, str] | None]) -> None:
    """Register the event listeners once per process (called when catga_bench.harness.user is
    imported by a locustfile); ``scenario_lookup`` finds the locustfile's scenario."""
    global _installed, _scenario_lookup
    _scenario_lookup = scenario_lookup
    if _installed:
        return
    _installed = True
    events.init_command_line_parser.add_listener(_on_parser)
    events.init.add_listener(_on_init)
    events.test_start.add_listener(_on_test_start)
    events.spawning_complete.add_listener(_on_spawned)
    events.test_stopping.add_listener(_on_stopping)
    events.quitting.add_listener(_on_quitting)
