"""Acceptance: toxiproxy-python 0.1.1, unmodified, drives the fault proxy as it would drive a
Toxiproxy server — create a proxy, add a latency toxic (the measured delay matches), remove it,
take the proxy down, bring it back, reset.

toxiproxy-python is a dev dependency (``toxiproxy-python==0.1.1``). When it is missing the test
is skipped on a workstation and FAILS under CI (``CI=true``), so CI cannot pass without it.
"""

from __future__ import annotations

import asyncio
import importlib
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from _support import missing

from catga_bench.faultproxy import FaultProxyServer
from catga_bench.faultproxy.model import split_host_port
from catga_bench.faultproxy.testing import Upstream


@pytest.fixture
def toxiproxy() -> ModuleType:
    try:
        module = importlib.import_module("toxiproxy")
        importlib.import_module("toxiproxy.api")
    except ImportError:
        missing("toxiproxy-python is not installed: add 'toxiproxy-python==0.1.1' to the "
                "[dev] extra (pip install toxiproxy-python==0.1.1)")
    return module


@pytest.fixture
def fault_proxy() -> Iterator[dict[str, Any]]:
    """A FaultProxyServer and an echo upstream on their own event loop thread."""
    ready = threading.Event()
    info: dict[str, Any] = {}

    async def serve() -> None:
        async with Upstream() as upstream, FaultProxyServer("127.0.0.1", 0) as server:
            info.update(api_port=server.port, echo=upstream.address,
                        loop=asyncio.get_running_loop(), stop=asyncio.Event())
            ready.set()
            await info["stop"].wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(5), "fault proxy did not start"
    try:
        yield info
    finally:
        info["loop"].call_soon_threadsafe(info["stop"].set)
        thread.join(5)


def round_trip(listen: str) -> float:
    """Seconds for one 4-byte echo through the proxy on a fresh connection."""
    with socket.create_connection(split_host_port(listen), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.perf_counter()
        sock.sendall(b"ping")
        got = b""
        while len(got) < 4:
            data = sock.recv(4 - len(got))
            assert data, "connection closed"
            got += data
        assert got == b"ping"
        return time.perf_counter() - start


def refused(listen: str) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(split_host_port(listen)) != 0


def test_toxiproxy_python_acceptance_flow(toxiproxy: ModuleType,
                                          fault_proxy: dict[str, Any]) -> None:
    from toxiproxy.api import APIConsumer
    from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

    saved = (APIConsumer.host, APIConsumer.port)
    server = toxiproxy.Toxiproxy()
    server.update_api_consumer("127.0.0.1", fault_proxy["api_port"])
    try:
        assert server.running()
        assert b'"version"' in server.version()

        proxy = server.create(upstream=fault_proxy["echo"], name="acceptance")
        assert proxy.enabled is True and not proxy.listen.endswith(":0")
        assert set(server.proxies()) == {"acceptance"}
        with pytest.raises(ProxyExists):
            server.create(upstream=fault_proxy["echo"], name="acceptance")
        base = statistics.median(round_trip(proxy.listen) for _ in range(5))
        assert base < 0.05

        proxy.add_toxic(type="latency", attributes={"latency": 100})
        toxic = proxy.get_toxic("latency_downstream")
        assert (toxic.type, toxic.stream, toxic.toxicity) == ("latency", "downstream", 1.0)
        assert toxic.attributes == {"latency": 100, "jitter": 0}
        delayed = [round_trip(proxy.listen) for _ in range(3)]
        assert all(0.098 <= rtt < 0.2 for rtt in delayed), delayed  # ~100 ms added
        with pytest.raises(InvalidToxic):
            proxy.add_toxic(type="no_such_toxic")

        assert proxy.destroy_toxic("latency_downstream") is True
        assert proxy.toxics() == {}
        assert round_trip(proxy.listen) < 0.05
        with pytest.raises(NotFound):
            proxy.destroy_toxic("latency_downstream")

        proxy.disable()
        assert server.get_proxy("acceptance").enabled is False
        assert refused(proxy.listen)
        proxy.enable()
        assert server.get_proxy("acceptance").enabled is True
        assert round_trip(proxy.listen) < 0.05
        with proxy.down():
            assert refused(proxy.listen)
        assert round_trip(proxy.listen) < 0.05

        proxy.add_toxic(type="timeout", stream="upstream", attributes={"timeout": 0})
        proxy.disable()
        assert server.reset() is True  # every toxic removed, every proxy enabled
        assert proxy.toxics() == {}
        assert server.get_proxy("acceptance").enabled is True
        assert round_trip(proxy.listen) < 0.05

        created = server.populate([{"name": "second", "listen": "127.0.0.1:0",
                                    "upstream": fault_proxy["echo"]}])
        assert [p.name for p in created] == ["second"]
        assert round_trip(server.get_proxy("second").listen) < 0.05
        server.destroy_all()
        assert server.proxies() == {}
        assert refused(proxy.listen)
    finally:
        APIConsumer.host, APIConsumer.port = saved
