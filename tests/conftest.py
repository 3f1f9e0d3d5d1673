"""Fixtures shared by every suite: brokers the tests start themselves on free ports.

Each fixture starts its own ``nats-server -js`` (temporary store dir) or ``redis-server`` (AOF,
``appendfsync always``) and stops it afterwards — never the machine's shared broker, so tests
may pause, kill and restart it. A missing binary fails under ``CI=true`` and skips elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _support import require_tool

from catga_bench.processes.brokers import BrokerProcess


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
