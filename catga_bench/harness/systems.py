"""The system under test of a run, as the Locust harness handles it: which target drives it,
and — for a black box described by an AsyncAPI document — emptying its input stream before the
run (``purge``), starting and stopping the service the document says how to start
(``x-catga-bench.process``), and what the report says of it (``sut``, ``transport``).

One :class:`SystemUnderTest` per :class:`~catga_bench.harness.plugin.Harness`; it reads the
harness's Locust environment, options and scenario, and owns the
:class:`~catga_bench.targets.sut_process.SutProcess` (a local run, or the master of a
distributed one: one copy of the service).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from catga_bench.errors import ConfigError
from catga_bench.harness.bridge import LoopThread
from catga_bench.harness.options import DEFAULT_URLS
from catga_bench.judge.gate import CORE_SUT
from catga_bench.targets.defects import defects_from_env
from catga_bench.workload.plan import RunPlan

if TYPE_CHECKING:
    from catga_bench.harness.plugin import Harness
    from catga_bench.targets.base import Target
    from catga_bench.targets.sut_process import SutProcess
    from catga_bench.workload.asyncapi import SutSpec

log = logging.getLogger("catga.bench")


class SystemUnderTest:
    """The run's system under test (see the module docstring). ``process`` is the service the
    harness started, or None."""

    def __init__(self, harness: Harness) -> None:
        self.h = harness
        self.process: SutProcess | None = None
        self._stopped = False

    def prepare(self, plan: RunPlan) -> None:
        """Build (not start) the :class:`SutProcess` when the run's AsyncAPI document has
        ``x-catga-bench.process`` and this process owns it (a local run, or the master of a
        distributed run: one copy of the service). Its env placeholders get the effective
        URLs: ``--nats-url`` / ``--redis-url`` / ``--host`` over the document's servers, over
        the brokers' usual addresses (``nats://127.0.0.1:4222``, ``redis://127.0.0.1:6379``).

        Raises:
            ConfigError: an env value uses a placeholder with no URL (exit 2).
        """
        spec = plan.spec
        if spec is None or spec.bench.process is None or self.h.is_worker \
                or getattr(self.h.env.parsed_options, "sut_running", False):
            return
        from catga_bench.targets.sut_process import SutProcess, effective_urls, log_name

        opts = self.h.env.parsed_options
        urls = effective_urls(
            spec, nats_url=self.h.options.nats_url,
            redis_url=self._redis_url(),
            http_url=self.h.env.host or getattr(opts, "host", None))
        for key, transport in (("nats_url", "nats"), ("redis_url", "redis")):
            urls[key] = urls[key] or DEFAULT_URLS[transport]  # a broker has a usual address
        self.process = SutProcess(spec.bench.process, urls, self.h.report_dir(),
                                      log_name(spec.title), spec_path=spec.path)

    def _redis_url(self) -> str | None:
        """An explicit ``--redis-url`` / ``$CATGA_REDIS_URL``, else None."""
        opts = self.h.env.parsed_options
        return getattr(opts, "redis_url", None) or os.environ.get("CATGA_REDIS_URL")

    def shared_run_id(self) -> str | None:
        """The id the master of a distributed run gave every worker (``--catga-run``, set by
        the master, shipped to workers with Locust's custom options), or None."""
        return getattr(self.h.env.parsed_options, "catga_run", None) or None

    def purge(self, plan: RunPlan) -> None:
        """``x-catga-bench.jetstream.purge`` (or ``redis.purge`` for a service over Redis
        Streams): empty the service's input stream before the run (and before the service
        starts), on a short-lived loop of its own.

        Raises:
            TargetUnavailable: the NATS (Redis) server cannot be reached.
        """
        spec = plan.spec
        if spec is not None and self.h.scenario.sut == "asyncapi" \
                and spec.input_broker() == "redis":
            self._purge_redis(spec)
            return
        js = spec.bench.jetstream if spec is not None else None
        if spec is None or js is None or not js.purge or self.h.is_worker:
            return
        from catga_bench.targets.asyncapi import purge_input_stream

        server = spec.server("nats")
        url = self.h.options.nats_url or (server.url() if server else DEFAULT_URLS["nats"])
        loop = LoopThread(name="catga-purge")
        loop.start()
        try:
            removed = loop.call(purge_input_stream(spec, url), timeout_s=15)
        finally:
            loop.stop()
        if removed:
            log.info("catga-bench: purged %d message(s) an earlier run left in stream %s",
                     removed, js.stream)

    def _purge_redis(self, spec: SutSpec) -> None:
        """``x-catga-bench.redis.purge``: trim the input stream (and ack the group's pending
        entries) before the run. Raises TargetUnavailable: Redis cannot be reached."""
        ext = spec.bench.redis
        if ext is None or not ext.purge or self.h.is_worker:
            return
        from catga_bench.targets.redis_streams import purge_redis_input

        server = spec.broker_server()
        url = self._redis_url() or (server.url() if server else DEFAULT_URLS["redis"])
        loop = LoopThread(name="catga-purge")
        loop.start()
        try:
            removed = loop.call(purge_redis_input(spec, url), timeout_s=15)
        finally:
            loop.stop()
        if removed:
            log.info("catga-bench: trimmed %d entr(y/ies) an earlier run left in stream %s",
                     removed, spec.input_operation().channel.address)

    def start(self) -> None:
        """Start the service (if :meth:`prepare` built one) and wait until it is ready.

        Raises:
            TargetUnavailable: it exited or was not ready in time (its last lines included).
        """
        sut = self.process
        if sut is None or sut.starts:
            return
        log.info("catga-bench: starting the system under test: %s", " ".join(sut.command))
        sut.start()
        log.info("catga-bench: the system under test is ready after %.2f s (pid %s, log %s)",
                 sut.ready_s or 0.0, sut.pid, sut.log_path)

    def stop(self) -> None:
        """Stop the service the harness started (SIGTERM, SIGKILL after its grace period);
        once, after the drain."""
        sut = self.process
        if sut is None or not sut.starts or self._stopped:
            return
        self._stopped = True
        if not sut.running:
            log.warning("catga-bench: the system under test had exited before the run ended "
                        "(exit code %s; log %s)", sut.facts()["exit_code"], sut.log_path)
        code = sut.stop()
        log.info("catga-bench: the system under test stopped (exit code %s)", code)

    def target(self, plan: RunPlan) -> Target:
        """The system under test that ``--sut`` and ``--transport`` name."""
        if plan.spec is not None and self.h.scenario.sut == "http":
            from catga_bench.targets.http import HttpTarget

            return HttpTarget(plan.spec, self.h.env.host or None, nats_url=self.h.options.nats_url,
                              run=self.shared_run_id())
        if plan.spec is not None and plan.spec.input_broker() == "redis":
            from catga_bench.targets.redis_streams import RedisStreamsTarget

            return RedisStreamsTarget(plan.spec, url=self._redis_url(), run=self.shared_run_id())
        if plan.spec is not None:
            from catga_bench.targets.asyncapi import AsyncApiTarget

            return AsyncApiTarget(plan.spec, url=self.h.options.nats_url, run=self.shared_run_id())
        if self.h.options.transport == "embedded":
            from catga_bench.targets.embedded import EmbeddedTarget

            return EmbeddedTarget(defects=defects_from_env())
        from catga_bench.targets.broker import BrokerTarget

        assert self.h.options.broker_url is not None
        return BrokerTarget(self.h.options.transport, self.h.options.broker_url)

    def report_transport(self, kind: str) -> str:
        """The report's ``transport``: the broker a black box is driven over (``nats`` or
        ``redis``), ``http``, else ``--transport``."""
        if kind == "http":
            return "http"
        if kind != "asyncapi":
            return self.h.options.transport
        try:
            spec = RunPlan.of(self.h.scenario).spec
        except ConfigError:
            return "nats"
        return spec.input_broker() if spec is not None else "nats"

    def facts(self) -> dict[str, Any]:
        """The report's ``sut``: kind, the AsyncAPI document's path, the channels used (for
        ``http`` the request URL stands for the input channel)."""
        kind = self.h.scenario.sut
        if kind not in ("asyncapi", "http"):
            return dict(CORE_SUT)
        try:
            plan = RunPlan.of(self.h.scenario)
            url = None
            if kind == "http" and plan.spec is not None:
                from catga_bench.workload.http import http_input

                url = http_input(plan.spec, self.h.env.host or None).url
            channels = plan.channels(url)
        except ConfigError:
            channels = []
        facts: dict[str, Any] = {"kind": kind, "spec": self.h.scenario.sut_spec,
                                 "channels": channels}
        if self.process is not None:
            facts["process"] = self.process.facts(self.h.report_dir())
        return facts


__all__ = ["SystemUnderTest"]
