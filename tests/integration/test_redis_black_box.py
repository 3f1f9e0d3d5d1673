"""A service in a black box over Redis Streams, run as a user runs it:
``locust -f examples/order-service-redis/locustfile.py --redis-url URL`` against a private
redis-server. The document's ``x-catga-bench.process`` starts the service (a consumer group on
``orders:placed``, XACK after its confirmation, XAUTOCLAIM of entries pending over 2 s).

Clean it passes with every output class at 0; ``drop_1pct`` fails on lost (and
``failing_messages`` names the lost ids), ``bad_schema_1pct`` on nonconformant; an unreachable
Redis is exit 3 and one line; a kill -9 of the service mid-run at QoS 1, restarted at once, loses
nothing (the new consumer claims what the dead one read and never acknowledged);
``x-catga-bench.redis.purge`` trims the input stream and acks the group's pending entries."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import yaml

from catga_bench.processes.brokers import BrokerProcess
from catga_bench.processes.locust import locust_command
from catga_bench.targets.redis_streams import purge_redis_input
from catga_bench.targets.sut_process import SutProcess, effective_urls
from catga_bench.workload.asyncapi import load_spec

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "order-service-redis"
LOCUSTFILE = EXAMPLE / "locustfile.py"
DOC = EXAMPLE / "asyncapi.yaml"


def _locust(tmp_path: Path, url: str, run_time_s: int, *extra: str,
            env: dict[str, str] | None = None,
            name: str = "report") -> tuple[int, dict[str, Any], str]:
    """One run of the example's locustfile at ``url``: exit code, report.json, output tail."""
    report_dir = tmp_path / name
    cmd = locust_command(LOCUSTFILE, users=5, run_time_s=run_time_s, report_dir=report_dir,
                         extra=("--redis-url", url, *extra))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "ORDER_SERVICE_DEFECT": "", **(env or {})})
    out = proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (report_dir / "report.json").exists(), out
    return proc.returncode, json.loads((report_dir / "report.json").read_text()), out


def _classes(r: dict[str, Any]) -> tuple[int, ...]:
    return r["lost"], r["duplicates"], r["late"], r["unexpected"], r["nonconformant"]


def test_the_redis_service_passes_clean(redis_server: BrokerProcess, tmp_path: Path) -> None:
    code, r, out = _locust(tmp_path, redis_server.url, 6)
    assert code == 0, f"{r['verdict']}\n{out}"
    process = r["sut"].pop("process")
    assert r["sut"] == {"kind": "asyncapi", "spec": str(DOC),
                        "channels": ["orders:placed", "orders:confirmed"]}
    assert r["transport"] == "redis"
    assert r["broker"]["name"] == "redis" and r["broker"]["publish_errors"] == 0
    assert process["exit_code"] == 0 and process["log"] == "sut-order-service-redis.log"
    log = (tmp_path / "report" / process["log"]).read_text()
    assert f"order-service: ready on {redis_server.url}" in log
    assert r["handlers"]["confirmOrder"]["handled"] == r["sent"] > 1000
    assert _classes(r) == (0, 0, 0, 0, 0)


def test_drop_1pct_is_lost_and_named(redis_server: BrokerProcess, tmp_path: Path) -> None:
    code, r, out = _locust(tmp_path, redis_server.url, 6,
                           env={"ORDER_SERVICE_DEFECT": "drop_1pct"})
    assert code == 1, f"{r['verdict']}\n{out}"
    assert r["lost"] >= r["sent"] // 100 - 1 > 8
    assert "lost" in r["verdict"]
    failing = r["failing_messages"]
    assert failing, r.keys()
    run_ids = {f["correlation_id"].split(".")[0] for f in failing}
    assert len(run_ids) == 1  # <run>.<stream>.<seq>, stamped by this run
    # the service drops its 100th, 200th, ... order: seq 99, 199, ... (one consumer, in order)
    assert {int(f["correlation_id"].rsplit(".", 1)[1]) % 100 for f in failing} == {99}, failing


def test_bad_schema_1pct_is_nonconformant(redis_server: BrokerProcess, tmp_path: Path) -> None:
    code, r, out = _locust(tmp_path, redis_server.url, 6,
                           env={"ORDER_SERVICE_DEFECT": "bad_schema_1pct"})
    assert code == 1, f"{r['verdict']}\n{out}"
    assert r["nonconformant"] >= r["sent"] // 100 - 1 > 8
    assert r["lost"] == 0
    assert "nonconformant" in r["verdict"]
    sample = next(s for s in r["output_samples"] if s["kind"] == "nonconformant")
    assert "status" in sample["reason"]


def test_an_unreachable_redis_is_exit_3_and_one_line(tmp_path: Path) -> None:
    """The service assumed running (no process block): the target finds no Redis."""
    doc = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    doc["x-catga-bench"].pop("process")
    spec = tmp_path / "asyncapi.yaml"
    spec.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    cmd = locust_command(LOCUSTFILE, users=2, run_time_s=3, report_dir=tmp_path / "report",
                         extra=("--redis-url", "redis://127.0.0.1:1", "--sut-spec", str(spec)))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out[-2000:]
    errors = [line for line in out.splitlines() if line.startswith("catga-bench: error:")]
    assert len(errors) == 1, out[-2000:]
    assert errors[0].startswith("catga-bench: error: the system under test's Redis server "
                                "redis://127.0.0.1:1 cannot be reached: ")
    assert "Traceback" not in out


def test_a_kill_of_the_service_at_qos_1_loses_nothing(redis_server: BrokerProcess,
                                                      tmp_path: Path) -> None:
    """The service (50 ms of work per batch: entries stay pending) is started here, the run
    told it is running; 3 s in it is killed -9 and started again. What the dead consumer read
    and never acknowledged is claimed by the new one after 2 s idle: nothing is lost."""
    spec = load_spec(DOC)
    assert spec.bench.process is not None
    process = spec.bench.process.model_copy(update={
        "env": {**spec.bench.process.env, "ORDER_SERVICE_WORK_MS": "50"}})
    sut = SutProcess(process, effective_urls(spec, redis_url=redis_server.url), tmp_path,
                     "order-service-redis", spec_path=spec.path)
    sut.start()
    restarted = threading.Event()

    def chaos() -> None:
        time.sleep(3.0)
        sut.restart()  # kill -9, start again, wait until ready
        restarted.set()

    thread = threading.Thread(target=chaos)
    thread.start()
    try:
        code, r, out = _locust(tmp_path, redis_server.url, 10, "--sut-running",
                               "--slo-p99-ms", "off")
    finally:
        thread.join()
        sut.stop()
    assert restarted.is_set() and sut.starts == 2
    log = sut.log_path.read_text()
    assert "claimed" in log, log[-2000:]  # the dead consumer's pending entries
    assert r["sent"] > 2000
    assert r["lost"] == 0, f"{r['verdict']}\n{out}"
    assert code == 0, f"{r['verdict']}\n{out}"
    # each claimed entry shows: either its first output came only after the 2 s claim (latency),
    # or the dead consumer had emitted it before dying and it comes again (a QoS 1 duplicate)
    assert r["latency_ms"]["max"] >= 1000 or r["duplicates"] > 0, (r["latency_ms"], log[-800:])


def test_purge_trims_the_input_stream_and_acks_the_groups_pending(
        redis_server: BrokerProcess, tmp_path: Path) -> None:
    """``x-catga-bench.redis.purge``: what an earlier run left (entries, and entries a killed
    consumer held) is gone before the run; without a group yet, only the trim."""
    doc = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    doc["x-catga-bench"]["redis"]["purge"] = True
    path = tmp_path / "asyncapi.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    spec = load_spec(path)

    async def scenario() -> tuple[int | None, int, int, int | None]:
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            await client.xgroup_create("orders:placed", "order-service", id="$", mkstream=True)
            for i in range(10):
                await client.xadd("orders:placed", {"payload": f'{{"n": {i}}}'})
            await client.xreadgroup("order-service", "dead", {"orders:placed": ">"}, count=4)
            removed = await purge_redis_input(spec, redis_server.url)
            length = await client.xlen("orders:placed")
            pending = (await client.xpending("orders:placed", "order-service"))["pending"]
            await client.delete("orders:placed")
            await client.xadd("orders:placed", {"payload": "{}"})  # no group: trim only
            again = await purge_redis_input(spec, redis_server.url)
            return removed, length, pending, again
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == (10, 0, 0, 1)
