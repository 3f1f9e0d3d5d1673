"""Fixtures shared by every suite: brokers the tests start themselves on free ports.

Each fixture starts its own ``nats-server -js`` (temporary store dir) or ``redis-server`` (AOF,
``appendfsync always``) and stops it afterwards — never the machine's shared broker, so tests
may pause, kill and restart it. A missing binary fails under ``CI=true`` and skips elsewhere.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _support import require_tool

from catga_bench.processes.brokers import BrokerProcess

# Locust runs started by the tests write report.json and report.md, not the HTML page: its
# matplotlib plots cost ~1.5 s at the end of each of the suite's ~150 runs. The page itself is
# tested by tests/unit/test_report.py, and the clean gate (tests/_support.run_gates) writes all
# three files, which tests/chaos/test_gate_embedded.py checks.
os.environ.setdefault("CATGA_REPORT_FORMATS", "json,md")


def _broker(kind: str, binary: str) -> Iterator[BrokerProcess]:
    require_tool(binary, f"apt-get install -y {binary}")
    with BrokerProcess(kind) as broker:  # type: ignore[arg-type]
        yield broker


@pytest.fixture
def nats_server() -> Iterator[BrokerProcess]:
    """A fresh nats-server with JetStream for one test (``.url``, ``.pause()``, ``.kill()``,
    ``.restart()``)."""
    yield from _broker("nats", "nats-server")


@pytest.fixture
def redis_server() -> Iterator[BrokerProcess]:
    """A fresh redis-server for one test (same controls as ``nats_server``)."""
    yield from _broker("redis", "redis-server")


@pytest.fixture(scope="module")
def nats_server_module() -> Iterator[BrokerProcess]:
    """One nats-server shared by a test module (tests must use distinct subjects)."""
    yield from _broker("nats", "nats-server")


@pytest.fixture(scope="module")
def redis_server_module() -> Iterator[BrokerProcess]:
    """One redis-server shared by a test module (tests must use distinct keys)."""
    yield from _broker("redis", "redis-server")


@pytest.fixture(scope="session")
def node_order_service() -> Path:
    """examples/order-service-node with its npm dependencies installed (``npm ci`` from the
    committed lockfile, once). Node.js and npm missing: a failure under ``CI=true``."""
    require_tool("node", "apt-get install -y nodejs npm")
    require_tool("npm", "apt-get install -y npm")
    folder = Path(__file__).resolve().parents[1] / "examples" / "order-service-node"
    if not (folder / "node_modules" / "nats").is_dir():
        proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=folder,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"npm ci failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return folder
