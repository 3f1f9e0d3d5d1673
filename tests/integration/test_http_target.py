"""A service behind HTTP as a black box (``--sut http``), run as a user runs it:
``locust -f ... --sut http --host URL``, against a small aiohttp service started here on a free
port. Clean, it passes; answered 500s are errors counted by status (the gate fails); a stall
shows in P99 (the open model does not wait for it); no service is exit 3 and one line; an order
taken with 202 and confirmed later on NATS completes through its event."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _support import free_port
from aiohttp import web  # a dev dependency: missing, the module fails, never skips

from catga_bench.processes.brokers import BrokerProcess
from catga_bench.processes.locust import locust_command

pytestmark = pytest.mark.slow

SPECS = Path(__file__).parent / "specs"
LOCUSTFILE = SPECS / "http_locustfile.py"
ASYNC_SPEC = SPECS / "orders-http-async.yaml"
Handler = Callable[[Any], Awaitable[Any]]


class Service:
    """An aiohttp service on 127.0.0.1:``port`` in its own thread and loop; ``handler`` answers
    every request (``handler(request) -> web.Response``)."""

    def __init__(self, handler: Handler, *, on_start: Callable[[], Awaitable[None]] | None = None,
                 on_stop: Callable[[], Awaitable[None]] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.handler, self.on_start, self.on_stop = handler, on_start, on_stop
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self.loop.run_until_complete,
                                        args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        if self.on_start is not None:
            await self.on_start()

        async def handle(request: Any) -> Any:
            self.requests += 1
            return await self.handler(request)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()
        if self.on_stop is not None:
            await self.on_stop()

    def __enter__(self) -> Service:
        self._thread.start()
        assert self._ready.wait(10), "the test service did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def _locust(tmp_path: Path, host: str, *extra: str, seconds: int = 5,
            rate: int = 300) -> tuple[int, str, Path]:
    report_dir = tmp_path / "report"
    cmd = locust_command(LOCUSTFILE, users=2, run_time_s=seconds, report_dir=report_dir,
                         extra=("--host", host, "--rate", str(rate), *extra))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    return proc.returncode, proc.stdout + proc.stderr, report_dir


def _report(report_dir: Path, output: str) -> dict[str, Any]:
    path = report_dir / "report.json"
    assert path.exists(), output[-3000:]
    report: dict[str, Any] = json.loads(path.read_text())
    return report


async def _ok(request: Any) -> Any:
    body = await request.json()
    assert request.headers["X-Test"] == "catga"  # x-catga-bench.http.headers
    assert request.headers["Content-Type"] == "application/json"
    return web.json_response({"order_id": request.headers["Catga-Correlation-Id"],
                              "sku": body["sku"], "status": "confirmed"})


def test_a_clean_http_service_passes(tmp_path: Path) -> None:
    with Service(_ok) as service:
        code, out, report_dir = _locust(tmp_path, service.url)
    r = _report(report_dir, out)
    assert code == 0, r["verdict"]
    assert r["sut"]["kind"] == "http"
    assert r["sut"]["channels"] == [f"{service.url}/orders"]
    assert r["transport"] == "http"
    assert r["sent"] > 1000
    assert r["handlers"] == {"response": {"handled": r["sent"], "failed": 0}}
    assert (r["lost"], r["errors"]) == (0, {})
    assert r["broker"]["status_200"] == r["sent"] == service.requests
    assert r["achieved_rate"] >= 0.95 * 300


def test_answered_500s_are_errors_counted_by_status_and_fail_the_gate(tmp_path: Path) -> None:
    count = 0

    async def every_tenth_fails(request: Any) -> Any:
        nonlocal count
        count += 1
        if count % 10 == 0:
            return web.json_response({"error": "boom"}, status=500)
        return await _ok(request)

    with Service(every_tenth_fails) as service:
        code, out, report_dir = _locust(tmp_path, service.url)
    r = _report(report_dir, out)
    assert code == 1, r["verdict"]
    assert r["lost"] == 0  # an answered failure is a known failure, never a loss
    assert set(r["errors"]) == {"http_500"}
    assert abs(r["errors"]["http_500"] - r["sent"] // 10) <= 1
    assert r["handlers"]["response"] == {"handled": r["sent"] - r["errors"]["http_500"],
                                         "failed": r["errors"]["http_500"]}
    assert r["broker"]["status_500"] == r["errors"]["http_500"]
    assert "max_error_ratio" in r["verdict"]


def test_a_stall_shows_in_p99_the_open_model_does_not_wait(tmp_path: Path) -> None:
    """Every 2 s the service stops answering for 1 s: the generator keeps sending on schedule,
    so the messages due at the start of each stall wait the whole second."""
    started = time.monotonic()

    async def stalls(request: Any) -> Any:
        phase = (time.monotonic() - started) % 2.0
        if phase < 1.0:
            await asyncio.sleep(1.0 - phase)
        return await _ok(request)

    with Service(stalls) as service:
        code, out, report_dir = _locust(tmp_path, service.url, "--slo-p99-ms", "5000",
                                        seconds=6)
    r = _report(report_dir, out)
    assert code == 0, r["verdict"]
    assert r["lost"] == 0 and r["errors"] == {}
    assert r["latency_ms"]["p99"] >= 900, r["latency_ms"]
    # sent on schedule through the stalls: never behind, nothing left unsent
    assert r["generator"]["max_behind_s"] < 0.1 and r["generator"]["dropped_sends"] == 0
    assert r["sent"] >= 0.8 * 300 * 6


def test_no_service_is_exit_3_and_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, _ = _locust(tmp_path, url, seconds=3)
    assert code == 3, out[-2000:]
    assert f"catga-bench: error: the system under test at {url}/orders cannot be reached" in out
    assert "Traceback" not in out


def test_a_bad_host_is_exit_2_and_one_line(tmp_path: Path) -> None:
    code, out, _ = _locust(tmp_path, "ftp://127.0.0.1:21", seconds=3)
    assert code == 2, out[-2000:]
    assert ("catga-bench: error: --host: expected http[s]://HOST[:PORT][/base] for --sut http, "
            "got 'ftp://127.0.0.1:21'") in out
    assert "Traceback" not in out


@pytest.fixture
def nats_url(nats_server: BrokerProcess) -> Iterator[str]:
    yield nats_server.url


def test_taken_with_202_and_confirmed_on_nats_completes_by_the_event(
        tmp_path: Path, nats_url: str) -> None:
    """POST /orders/async answers 202 (accepted), then the service publishes OrderConfirmed
    with the order's id in a header: the event completes the message, nothing is lost."""
    import nats
    import orjson

    nc: Any = None
    confirmations: set[asyncio.Task[None]] = set()

    async def connect() -> None:
        nonlocal nc
        nc = await nats.connect(nats_url)

    async def disconnect() -> None:
        await nc.drain()

    async def take(request: Any) -> Any:
        body = await request.json()
        order_id = body["order_id"]  # the correlation id, stamped in the payload

        async def confirm() -> None:
            await asyncio.sleep(0.005)
            await nc.publish("test.http.orders.confirmed",
                             orjson.dumps({"order_id": order_id, "status": "confirmed"}),
                             headers={"Catga-Correlation-Id": order_id})

        task = asyncio.get_running_loop().create_task(confirm())
        confirmations.add(task)
        task.add_done_callback(confirmations.discard)
        return web.json_response({"order_id": order_id, "status": "accepted"}, status=202)

    with Service(take, on_start=connect, on_stop=disconnect) as service:
        code, out, report_dir = _locust(tmp_path, service.url, "--sut-spec", str(ASYNC_SPEC),
                                        "--nats-url", nats_url)
    r = _report(report_dir, out)
    assert code == 0, r["verdict"]
    assert r["sut"]["channels"] == [f"{service.url}/orders/async",
                                    "test.http.orders.confirmed"]
    assert r["handlers"] == {"confirmOrder": {"handled": r["sent"], "failed": 0}}
    assert (r["lost"], r["duplicates"], r["late"], r["unexpected"], r["nonconformant"]) == (
        0, 0, 0, 0, 0)
    assert r["broker"]["status_202"] == r["broker"]["outputs_received"] == r["sent"] > 1000
