"""LoopThread under gevent's monkey-patching, in a subprocess (the patching must not leak here).

The script prints one JSON line of observations; each test checks one of them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = r'''
import faulthandler
import json
import time

from gevent import monkey

monkey.patch_all()

import asyncio
import logging

import gevent

from catga_bench.harness.bridge import BridgeError, LoopThread

faulthandler.dump_traceback_later(50, exit=True)  # a hang shows its stacks on stderr
out = {}
real_rlock = monkey.get_original("_thread", "RLock")


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


root = logging.getLogger()
collect = Collect()
root.addHandler(collect)
root.setLevel(logging.INFO)

out["lock_real_before"] = isinstance(logging._lock, real_rlock)
lt = LoopThread()
lt.start()
out["lock_real_after"] = isinstance(logging._lock, real_rlock)
out["running_after_start"] = lt.running
main_ident = monkey.get_original("_thread", "get_ident")()
out["separate_thread"] = lt.thread_ident is not None and lt.thread_ident != main_ident


async def double(i):
    await asyncio.sleep(0)
    return i * 2


def calls(base, n):
    return [lt.call(double(base + i), timeout_s=10) for i in range(n)]


out["values"] = gevent.spawn(calls, 0, 200).get(timeout=30) == [i * 2 for i in range(200)]
greenlets = [gevent.spawn(calls, k * 50, 50) for k in range(4)]
gevent.joinall(greenlets, timeout=30)
out["concurrent_values"] = [g.value for g in greenlets] == [
    [(k * 50 + i) * 2 for i in range(50)] for k in range(4)]


async def boom():
    await asyncio.sleep(0)
    raise ValueError("boom 42")


try:
    lt.call(boom(), timeout_s=10)
    out["raised"] = None
except ValueError as exc:
    out["raised"] = str(exc)


async def sleepy():
    await asyncio.sleep(5)
    return "late"


t = time.monotonic()
try:
    lt.call(sleepy(), timeout_s=0.3)
    out["timeout"] = None
except BridgeError as exc:
    out["timeout"] = str(exc)
out["timeout_elapsed_s"] = time.monotonic() - t
out["after_timeout"] = lt.call(double(21), timeout_s=10)


async def log_on_loop():
    logging.getLogger("catga.test").warning("hello from the loop %d", 7)


lt.call(log_on_loop(), timeout_s=10)
out["seen_before_pump"] = [r.getMessage() for r in collect.records if r.name == "catga.test"]
lt.pump_logs()
out["seen_after_pump"] = [r.getMessage() for r in collect.records if r.name == "catga.test"]
out["deque_after_pump"] = len(lt.log_records)
lt.pump_logs()
out["seen_after_second_pump"] = sum(1 for r in collect.records if r.name == "catga.test")


async def spam(seconds):
    # loggers looked up by name and levels set: both take logging's module lock
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        logger = logging.getLogger(f"catga.spam.{n % 500}")
        logger.info("loop %d", n)
        if n % 7 == 0:
            logger.setLevel(logging.INFO)
        n += 1
        if n % 50 == 0:
            await asyncio.sleep(0)
    return n


g = gevent.spawn(lt.call, spam(1.0), 30)
gevent.sleep(0)
m = 0
pump_max = 0.0
end = time.monotonic() + 1.0
while time.monotonic() < end or not g.ready():
    logger = logging.getLogger(f"main.{m % 500}")
    logger.info("main %d", m)
    if m % 7 == 0:
        logger.setLevel(logging.INFO)
    if m % 100 == 0:
        t = time.monotonic()
        lt.pump_logs()
        pump_max = max(pump_max, time.monotonic() - t)
        gevent.sleep(0)
    m += 1
out["loop_logged"] = g.get(timeout=30)
out["main_logged"] = m
out["pump_max_s"] = pump_max
lt.pump_logs()
out["deque_after_spam"] = len(lt.log_records)
out["spam_forwarded"] = sum(1 for r in collect.records if r.name.startswith("catga.spam."))

t = time.monotonic()
lt.stop()
out["stop_s"] = time.monotonic() - t
out["running_after_stop"] = lt.running
coro = double(1)
try:
    lt.call(coro, timeout_s=1)
    out["call_after_stop"] = None
except BridgeError as exc:
    out["call_after_stop"] = str(exc)
finally:
    coro.close()
print(json.dumps(out))
'''

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    script = tmp_path_factory.mktemp("bridge") / "bridge_probe.py"
    script.write_text(SCRIPT)
    try:
        proc = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True,
                              text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the bridge probe hung (deadlock?)\nstdout:\n{exc.stdout}\n"
                    f"stderr:\n{exc.stderr}")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    return json.loads(lines[-1])


def test_start_runs_a_loop_in_its_own_os_thread(observed: dict[str, Any]) -> None:
    assert observed["running_after_start"] is True
    assert observed["separate_thread"] is True


def test_call_returns_values_from_greenlets(observed: dict[str, Any]) -> None:
    assert observed["values"] is True  # 200 sequential calls
    assert observed["concurrent_values"] is True  # 4 greenlets x 50 calls at once


def test_call_reraises_the_coroutines_exception(observed: dict[str, Any]) -> None:
    assert observed["raised"] == "boom 42"


def test_call_timeout_raises_bridge_error(observed: dict[str, Any]) -> None:
    assert observed["timeout"] == "no answer from the core's loop within 0.3 s"
    assert 0.25 <= observed["timeout_elapsed_s"] < 3.0
    assert observed["after_timeout"] == 42  # the bridge still works afterwards


def test_pump_logs_forwards_loop_records_to_root(observed: dict[str, Any]) -> None:
    assert observed["seen_before_pump"] == []  # held in the deque until pumped
    assert observed["seen_after_pump"] == ["hello from the loop 7"]
    assert observed["deque_after_pump"] == 0
    assert observed["seen_after_second_pump"] == 1  # forwarded once, not again


def test_logging_lock_is_a_real_os_lock(observed: dict[str, Any]) -> None:
    assert observed["lock_real_before"] is False  # gevent's patching installed its own
    assert observed["lock_real_after"] is True  # _real_locks_for_logging replaced it


def test_concurrent_logging_from_both_threads_does_not_deadlock(
    observed: dict[str, Any],
) -> None:
    assert observed["loop_logged"] > 1_000
    assert observed["main_logged"] > 100
    assert observed["spam_forwarded"] > 0
    assert observed["deque_after_spam"] == 0
    assert observed["pump_max_s"] < 1.0  # a pump ends even while the loop keeps logging


def test_stop_ends_the_thread(observed: dict[str, Any]) -> None:
    assert observed["running_after_stop"] is False
    assert observed["stop_s"] < 10.0
    assert observed["call_after_stop"] == "the core's event-loop thread is not running"
