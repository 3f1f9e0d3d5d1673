"""What an experiment runs against: a private broker, the fault proxy in front of it, the core
(``catga-bench serve``) and a background Locust run, all on free loopback ports.

The core and the generator connect through the proxy's listen port, so link toxics and a
disabled proxy hit both of them; control requests (``core_ping``, ``handler_fault``) go to the
broker directly, so they measure the core, not the experiment's own link.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from catga_bench.bundled import resource_dir, resource_path
from catga_bench.chaos.model import Environment, LoadEnv
from catga_bench.processes.brokers import BrokerProcess
from catga_bench.processes.coreproc import CoreProcess as _CoreProcess
from catga_bench.processes.coreproc import CoreStartError
from catga_bench.processes.locust import locust_command, transport_options

if TYPE_CHECKING:
    from catga_bench.targets.sut_process import SutProcess

#: the folder holding the catga_bench package (a checkout, or site-packages): subprocesses
#: get it on PYTHONPATH so ``python -m catga_bench...`` works from a checkout not installed
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class EnvironmentError_(RuntimeError):
    """Something the experiment needs could not be started (the message says what)."""


def shipped_scenarios() -> Path:
    """The shipped scenario folder (in the installed wheel, else the checkout's)."""
    try:
        return resource_dir("scenarios")
    except FileNotFoundError as exc:
        raise EnvironmentError_(str(exc)) from None


def _candidates(ref: str, base_dir: Path) -> list[Path]:
    """Where a relative file name may be: beside the experiment, in the working directory,
    among the shipped folders (``scenarios/...``, ``examples/...``)."""
    shipped = resource_path(ref)
    return [base_dir / ref, Path(ref), *([shipped] if shipped is not None else [])]


def resolve_scenario(ref: str, base_dir: Path) -> Path:
    """A scenario name (``scenarios/NAME.py``) or a ``.py`` path relative to the experiment."""
    if ref.endswith(".py"):
        for cand in _candidates(ref, base_dir):
            if cand.is_file():
                return cand.resolve()
        raise EnvironmentError_(f"scenario file {ref!r} not found (relative to {base_dir})")
    scenarios = shipped_scenarios()
    path = scenarios / f"{ref}.py"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in scenarios.glob("*.py")))
        raise EnvironmentError_(f"unknown scenario {ref!r}; known: {names}")
    return path


def resolve_file(ref: str, base_dir: Path) -> Path:
    """A file named relative to the experiment (or the working directory, or the shipped
    folders)."""
    for cand in _candidates(ref, base_dir):
        if cand.is_file():
            return cand.resolve()
    raise EnvironmentError_(f"file {ref!r} not found (relative to {base_dir})")


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT),
                                                      env.get("PYTHONPATH")]))
    return env


class ProxyApi:
    """The Toxiproxy HTTP API of a proxy server, over plain urllib (synchronous)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "catga-bench-chaos"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        return status, (json.loads(raw) if raw else None)

    def expect(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,
               201, 204)) -> Any:
        status, answer = self.call(method, path, body)
        if status not in ok:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {answer}")
        return answer


class ProxyProcess:
    """``python -m catga_bench.faultproxy --port 0`` in a subprocess."""

    def __init__(self, workdir: Path) -> None:
        self.log = workdir / "proxy.log"
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout_s: float = 15.0) -> ProxyApi:
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "catga_bench.faultproxy", "--port", "0", "--seed", "1"],
                stdout=subprocess.PIPE, stderr=err, text=True, env=_python_env())
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].split()[0]
                return ProxyApi(self.url)
        self.stop()
        raise EnvironmentError_(f"the fault proxy did not start: {self.log.read_text()[-500:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


class CoreProcess(_CoreProcess):
    """``catga-bench serve`` for an experiment (logging to ``workdir/core.log``); a core that
    does not start is an environment error."""

    def __init__(self, transport: str, url: str, scenario: Path, workdir: Path,
                 extra: list[str]) -> None:
        env = _python_env()
        super().__init__(transport, url, workdir / "core.log",
                         ["--scenario", str(scenario), "--scenarios", str(shipped_scenarios()),
                          *extra],
                         env=env)

    def start(self, timeout_s: float = 30.0) -> None:
        try:
            super().start(timeout_s)
        except CoreStartError as exc:
            raise EnvironmentError_(str(exc)) from None


def start_black_box(spec_path: Path, broker: str, link_url: str, workdir: Path) -> SutProcess:
    """Start the service of the AsyncAPI document ``spec_path`` from its
    ``x-catga-bench.process``, its ``{nats_url}`` / ``{redis_url}`` set to ``link_url`` (the
    fault proxy's listen port), logging to ``workdir``.

    Raises:
        EnvironmentError_: the document is unusable, has no ``process``, or the service did
            not become ready (its last log lines in the message).
    """
    from catga_bench.errors import ConfigError
    from catga_bench.targets.base import TargetUnavailable
    from catga_bench.targets.sut_process import SutProcess, effective_urls, log_name
    from catga_bench.workload.asyncapi import load_spec

    try:
        spec = load_spec(spec_path)
        if spec.bench.process is None:
            raise EnvironmentError_(
                f"{spec_path}: environment.sut needs x-catga-bench.process in the document: "
                "the experiment starts the service with its broker link through the proxy")
        urls = effective_urls(spec, **{f"{broker}_url": link_url})  # type: ignore[arg-type]
        sut = SutProcess(spec.bench.process, urls, workdir, log_name(spec.title),
                         spec_path=spec.path)
        sut.start()
    except (ConfigError, TargetUnavailable) as exc:
        raise EnvironmentError_(str(exc)) from None
    return sut


class LoadRun:
    """A headless Locust run in the background; :meth:`wait` returns its exit code. With
    ``black_box`` (an AsyncAPI document), the run drives that service (already started by
    the experiment) and reaches the broker at ``url`` directly."""

    def __init__(self, spec: LoadEnv, scenario: Path, transport: str, url: str,
                 workdir: Path, black_box: Path | None = None) -> None:
        self.spec = spec
        self.report_dir = workdir / "load-report"
        self.log = workdir / "load.log"
        secs = max(1, round(spec.duration_s))
        link = (transport_options(transport, url) if black_box is None else
                ["--sut", "asyncapi", "--sut-spec", str(black_box), "--sut-running",
                 f"--{transport}-url", url])
        self.argv = locust_command(scenario, users=spec.users, run_time_s=secs,
                                   report_dir=self.report_dir, extra=[*link, *spec.args])
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.code: int | None = None

    def start(self) -> None:
        self.started_at = time.time()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         env=_python_env(), cwd=self.log.parent)

    def wait(self) -> int:
        """Wait for the run to end (killing it after duration + timeout); its exit code."""
        if self.proc is None:
            raise RuntimeError("the load run was never started")
        if self.code is None:
            left = self.started_at + self.spec.duration_s + self.spec.timeout_s - time.time()
            try:
                self.code = self.proc.wait(max(1.0, left))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.code = self.proc.wait(10)
        return self.code

    def report(self) -> dict[str, Any]:
        path = self.report_dir / "report.json"
        if not path.exists():
            tail = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
            raise RuntimeError(f"the load run wrote no report.json (exit {self.code}): {tail}")
        return json.loads(path.read_text())  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


async def _control(kind: str, url: str, request: dict[str, Any], timeout_s: float) -> Any:
    from catga_bench.targets.wire import CTL_SUBJECT
    from core.transport import open_transport

    transport = open_transport(kind, url)
    try:
        await transport.connect()
        reply = await transport.request(CTL_SUBJECT, {}, orjson.dumps(request),
                                        timeout_s=timeout_s)
        return orjson.loads(reply.body)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(transport.close(), 2.0)


class Env:
    """Sets up and tears down an experiment's :class:`Environment`; activities act on it."""

    def __init__(self, spec: Environment, workdir: Path, base_dir: Path) -> None:
        self.spec = spec
        self.workdir = workdir.resolve()  # the load run's cwd is inside it: no relative paths
        self.base_dir = base_dir
        self.broker: BrokerProcess | None = None
        self.proxy_proc: ProxyProcess | None = None
        self.proxy: ProxyApi | None = None
        self.proxy_name = f"{spec.broker}-link"
        self.client_url = ""
        self.core: CoreProcess | None = None
        self.sut: SutProcess | None = None
        self.sut_spec: Path | None = None
        self.load: LoadRun | None = None
        self.marks: dict[str, tuple[float, float]] = {}

    def describe(self) -> dict[str, Any]:
        return {
            "broker": self.spec.broker,
            "broker_url": self.broker.url if self.broker else None,
            "proxy_api": self.proxy.url if self.proxy else None,
            "proxy": self.proxy_name if self.proxy else None,
            "client_url": self.client_url or None,
            "core_log": str(self.core.log) if self.core else None,
            "sut_spec": str(self.sut_spec) if self.sut_spec else None,
            "sut_log": str(self.sut.log_path) if self.sut else None,
            "load_log": str(self.load.log) if self.load else None,
            "load_report_dir": str(self.load.report_dir) if self.load else None,
        }

    def setup(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker = BrokerProcess(self.spec.broker)
        self.broker.start()
        self.client_url = self.broker.url
        if self.spec.proxy:
            self.proxy_proc = ProxyProcess(self.workdir)
            self.proxy = self.proxy_proc.start()
            created = self.proxy.expect("POST", "/proxies", {
                "name": self.proxy_name, "listen": "127.0.0.1:0",
                "upstream": f"127.0.0.1:{self.broker.port}"})
            self.client_url = f"{self.spec.broker}://{created['listen']}"
        if self.spec.core is not None:
            scenario = resolve_scenario(self.spec.core.scenario, self.base_dir)
            self.core = CoreProcess(self.spec.broker, self.client_url, scenario, self.workdir,
                                    self.spec.core.args)
            self.core.start(self.spec.core.start_timeout_s)
        if self.spec.sut is not None:
            self.sut_spec = resolve_file(self.spec.sut.spec, self.base_dir)
            self.sut = start_black_box(self.sut_spec, self.spec.broker, self.client_url,
                                       self.workdir)
        if self.spec.load is not None:
            scenario = resolve_scenario(self.spec.load.scenario, self.base_dir)
            if self.sut_spec is not None:  # the generator reaches the broker directly
                self.load = LoadRun(self.spec.load, scenario, self.spec.broker,
                                    self.broker.url, self.workdir, self.sut_spec)
            else:
                self.load = LoadRun(self.spec.load, scenario, self.spec.broker,
                                    self.client_url, self.workdir)

    def start_load(self, timeout_s: float = 30.0) -> None:
        """Start the load run and wait until its users are spawned (Locust's start-up takes
        seconds; a method's warm-up pause counts from here)."""
        if self.load is None:
            return
        self.load.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.load.proc is not None \
                and self.load.proc.poll() is None:
            if "All users spawned" in self.load.log.read_text(errors="replace"):
                return
            time.sleep(0.1)

    def control(self, request: dict[str, Any], timeout_s: float = 5.0) -> Any:
        """One control request to the core, sent to the broker directly."""
        if self.broker is None:
            raise RuntimeError("no broker in this experiment's environment")
        return asyncio.run(asyncio.wait_for(
            _control(self.spec.broker, self.broker.url, request, timeout_s), timeout_s + 5))

    def teardown(self, *, wait_for_load: bool = True) -> None:
        if self.load is not None and self.load.proc is not None:
            if wait_for_load:
                with contextlib.suppress(Exception):
                    self.load.wait()
            self.load.stop()
        if self.core is not None:
            self.core.stop()
        if self.sut is not None:
            self.sut.stop()
        if self.proxy_proc is not None:
            self.proxy_proc.stop()
        if self.broker is not None:
            self.broker.cleanup()
