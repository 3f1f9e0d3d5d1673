"""Fault proxy HTTP API on real loopback sockets: Toxiproxy's routes, JSON shapes and status
codes (201 create proxy, 200 create toxic, 204 delete/reset, 400/404/409 error bodies), the
listener following ``enabled``, ``/reset`` and ``/populate``."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from catga_bench.faultproxy import FaultProxyServer
from catga_bench.faultproxy.model import split_host_port
from catga_bench.faultproxy.testing import ApiClient, Upstream, connect

Scenario = Callable[[ApiClient, Upstream, FaultProxyServer], Awaitable[None]]


def run(scenario: Scenario) -> None:
    async def main() -> None:
        async with Upstream() as upstream, FaultProxyServer("127.0.0.1", 0, seed=1) as server:
            await asyncio.wait_for(scenario(ApiClient(server.url), upstream, server), 10)

    asyncio.run(main())


async def echo_once(listen: str, payload: bytes = b"ping") -> bytes:
    reader, writer = await connect(listen)
    try:
        writer.write(payload)
        return await asyncio.wait_for(reader.readexactly(len(payload)), 2)
    finally:
        writer.close()


def refused(listen: str) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(split_host_port(listen)) != 0


async def create(api: ApiClient, upstream: Upstream, name: str = "echo",
                 **fields: Any) -> dict[str, Any]:
    status, body = await api.post("/proxies", {"name": name, "listen": "127.0.0.1:0",
                                               "upstream": upstream.address, **fields})
    assert status == 201, body
    return body  # type: ignore[no-any-return]


def test_version_and_empty_index() -> None:
    async def scenario(api: ApiClient, upstream: Upstream, server: FaultProxyServer) -> None:
        status, body = await api.get("/version")
        assert status == 200 and body["version"].startswith("2.")
        assert await api.get("/proxies") == (200, {})

    run(scenario)


def test_create_proxy_shapes_and_errors() -> None:
    async def scenario(api: ApiClient, upstream: Upstream, server: FaultProxyServer) -> None:
        proxy = await create(api, upstream)
        host, port = split_host_port(proxy["listen"])
        assert host == "127.0.0.1" and port > 0  # port 0 reported as the real one
        assert proxy == {"name": "echo", "listen": proxy["listen"],
                         "upstream": upstream.address, "enabled": True, "toxics": []}
        assert await echo_once(proxy["listen"]) == b"ping"

        status, index = await api.get("/proxies")
        assert status == 200 and index == {"echo": proxy}  # an object keyed by name
        assert await api.get("/proxies/echo") == (200, proxy)

        assert await api.post("/proxies", {"name": "echo", "upstream": upstream.address}) == (
            409, {"error": "proxy already exists", "status": 409})
        assert await api.post("/proxies", {"upstream": upstream.address}) == (
            400, {"error": "missing required field: name", "status": 400})
        assert await api.post("/proxies", {"name": "x"}) == (
            400, {"error": "missing required field: upstream", "status": 400})
        status, body = await api.request("POST", "/proxies", raw=b"{not json")
        assert status == 400 and body["error"].startswith("bad request body")
        assert await api.get("/proxies/nope") == (404, {"error": "proxy not found", "status": 404})

        # A listen address already in use: Toxiproxy's 500 with the listen error.
        status, body = await api.post("/proxies", {"name": "clash", "listen": proxy["listen"],
                                                   "upstream": upstream.address})
        assert status == 500 and body["error"].startswith(f"listen tcp {proxy['listen']}")
        assert "clash" not in (await api.get("/proxies"))[1]

    run(scenario)


def test_toxic_crud_shapes_and_status_codes() -> None:
    async def scenario(api: ApiClient, upstream: Upstream, server: FaultProxyServer) -> None:
        await create(api, upstream)
        status, toxic = await api.post("/proxies/echo/toxics",
                                       {"type": "latency", "attributes": {"latency": 10}})
        assert status == 200  # Toxiproxy answers 200, not 201, to a new toxic
        assert toxic == {"attributes": {"latency": 10, "jitter": 0}, "name": "latency_downstream",
                         "type": "latency", "stream": "downstream", "toxicity": 1.0}
        status, up = await api.post("/proxies/echo/toxics", {
            "name": "cut", "type": "limit_data", "stream": "upstream", "toxicity": 0.5,
            "attributes": {"bytes": 1000}})
        assert status == 200 and up["name"] == "cut" and up["toxicity"] == 0.5

        # Upstream toxics are listed first, then downstream ones (Toxiproxy's order).
        assert await api.get("/proxies/echo/toxics") == (200, [up, toxic])
        assert (await api.get("/proxies/echo"))[1]["toxics"] == [up, toxic]
        assert await api.get("/proxies/echo/toxics/cut") == (200, up)

        assert await api.post("/proxies/echo/toxics", {"type": "latency"}) == (
            409, {"error": "toxic already exists", "status": 409})
        assert await api.post("/proxies/echo/toxics", {"type": "bogus"}) == (
            400, {"error": "invalid toxic type", "status": 400})
        assert await api.post("/proxies/echo/toxics", {"type": "latency", "stream": "x"}) == (
            400, {"error": "stream was invalid, can be either upstream or downstream",
                  "status": 400})
        status, body = await api.post("/proxies/echo/toxics", {
            "type": "bandwidth", "attributes": {"rate": "fast"}})
        assert status == 400 and body["error"].startswith("bad request body")
        assert await api.post("/proxies/nope/toxics", {"type": "latency"}) == (
            404, {"error": "proxy not found", "status": 404})
        assert await api.get("/proxies/echo/toxics/nope") == (
            404, {"error": "toxic not found", "status": 404})

        status, updated = await api.patch("/proxies/echo/toxics/latency_downstream",
                                          {"attributes": {"jitter": 5}, "toxicity": 0.75})
        assert status == 200
        assert updated["attributes"] == {"latency": 10, "jitter": 5}
        assert updated["toxicity"] == 0.75
        status, updated = await api.post("/proxies/echo/toxics/latency_downstream",
                                         {"attributes": {"latency": 20}})
        assert status == 200 and updated["attributes"] == {"latency": 20, "jitter": 5}
        assert (await api.patch("/proxies/echo/toxics/nope", {}))[0] == 404

        assert await api.delete("/proxies/echo/toxics/latency_downstream") == (204, None)
        assert await api.delete("/proxies/echo/toxics/latency_downstream") == (
            404, {"error": "toxic not found", "status": 404})
        assert await api.get("/proxies/echo/toxics") == (200, [up])

    run(scenario)


def test_enabled_false_closes_the_listener_and_true_reopens_it() -> None:
    async def scenario(api: ApiClient, upstream: Upstream, server: FaultProxyServer) -> None:
        proxy = await create(api, upstream)
        reader, writer = await connect(proxy["listen"])
        writer.write(b"a")
        assert await reader.readexactly(1) == b"a"

        status, body = await api.post("/proxies/echo", {"enabled": False})  # toxiproxy-python
        assert status == 200 and body["enabled"] is False
        assert body["listen"] == proxy["listen"]
        assert refused(proxy["listen"])
        assert await asyncio.wait_for(reader.read(10), 2) == b""  # open connection dropped
        writer.close()

        status, body = await api.patch("/proxies/echo", {"enabled": True})
        assert status == 200 and body["enabled"] is True
        assert body["listen"] == proxy["listen"]  # same port again
        assert await echo_once(proxy["listen"]) == b"ping"

    run(scenario)


def test_create_disabled_then_delete() -> None:
    async def scenario(api: ApiClient, upstream: Upstream, server: FaultProxyServer) -> None:
        proxy = await create(api, upstream, enabled=False)
        assert proxy["enabled"] is False and proxy["listen"] == "127.0.0.1:0"
        status, body = await api.patch("/proxies/echo", {"enabled": True})
        assert status == 200 and not body["listen"].endswith(":0")
        assert await echo_once(body["listen"]) == b"ping"

        assert await api.delete("/proxies/echo") == (204, None)
        assert refused(body["listen"])
        assert await api.delete("/proxies/echo") == (404, {"error": "proxy not found",
                                                           "status": 404})

    run(scenario)


def test_changing_upstream_restarts_the_proxy() -> None:
    async def scenario(api: ApiClient, upstream: Upstream, server: FaultProxyServer) -> None:
        status, proxy = await api.post("/proxies", {"name": "echo", "listen": "127.0.0.1:0",
                                                    "upstream": "127.0.0.1:1"})
        assert status == 201
        reader, writer = await connect(proxy["listen"])
        assert await asyncio.wait_for(reader.read(1), 2) == b""  # upstream refused: closed
        writer.close()
        status, body = await api.patch("/proxies/echo", {"upstream": upstream.address})
        assert status == 200 and body["upstream"] == upstream.address and body["enabled"]
        assert await echo_once(body["listen"]) == b"ping"

    run(scenario)


def test_reset_removes_toxics_and_reenables() -> None:
    async def scenario(api: ApiClient, upstream: Upstream, server: FaultProxyServer) -> None:
        a = await create(api, upstream, "a")
        await create(api, upstream, "b")
        await api.post("/proxies/a/toxics", {"type": "timeout", "attributes": {"timeout": 0}})
        await api.post("/proxies/b/toxics", {"type": "latency", "stream": "upstream"})
        await api.post("/proxies/a", {"enabled": False})

        assert await api.post("/reset") == (204, None)
        status, index = await api.get("/proxies")
        assert status == 200
        assert all(p["enabled"] and p["toxics"] == [] for p in index.values())
        assert await echo_once(a["listen"]) == b"ping"  # the black hole is gone

    run(scenario)


def test_populate_creates_keeps_and_replaces() -> None:
    async def scenario(api: ApiClient, upstream: Upstream, server: FaultProxyServer) -> None:
        items: list[dict[str, Any]] = [
            {"name": f"p{i}", "listen": "127.0.0.1:0", "upstream": upstream.address}
            for i in range(3)]
        items.append({"name": "off", "listen": "127.0.0.1:0", "upstream": upstream.address,
                      "enabled": False})
        status, body = await api.post("/populate", items)
        assert status == 201
        proxies = {p["name"]: p for p in body["proxies"]}
        assert list(proxies) == ["p0", "p1", "p2", "off"]
        assert proxies["off"]["enabled"] is False
        for name in ("p0", "p1", "p2"):
            assert await echo_once(proxies[name]["listen"]) == b"ping"

        # Same listen and upstream: kept as it is, toxics included.
        await api.post("/proxies/p0/toxics", {"type": "latency"})
        same = [{"name": "p0", "listen": proxies["p0"]["listen"], "upstream": upstream.address}]
        status, body = await api.post("/populate", same)
        assert status == 201 and body["proxies"][0]["toxics"] != []
        # Different upstream: replaced (fresh, without toxics).
        status, body = await api.post("/populate", [{**same[0], "upstream": "127.0.0.1:1"}])
        assert status == 201
        assert body["proxies"][0]["upstream"] == "127.0.0.1:1"
        assert body["proxies"][0]["toxics"] == []

        # One bad item: 400 and nothing applied.
        status, body = await api.post("/populate", [
            {"name": "new", "upstream": upstream.address}, {"upstream": upstream.address}])
        assert status == 400
        assert body == {"error": "missing required field: name at proxy 2", "status": 400,
                        "proxies": None}
        assert "new" not in (await api.get("/proxies"))[1]

    run(scenario)


def test_routing_errors_like_toxiproxy() -> None:
    async def scenario(api: ApiClient, upstream: Upstream, server: FaultProxyServer) -> None:
        status, body = await api.request("GET", "/proxies",
                                         headers={"User-Agent": "Mozilla/5.0 (X11)"})
        assert (status, body) == (403, "User agent not allowed\n")
        assert await api.get("/nowhere") == (404, "404 page not found\n")
        assert (await api.request("PUT", "/proxies"))[0] == 405
        assert (await api.request("DELETE", "/reset"))[0] == 405

    run(scenario)


def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    async def scenario(api: ApiClient, upstream: Upstream, server: FaultProxyServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        request = b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n"
        writer.write(request * 2)
        seen = b""
        while seen.count(b"HTTP/1.1 200") < 2:
            chunk = await asyncio.wait_for(reader.read(4096), 2)
            assert chunk
            seen += chunk
        writer.close()

    run(scenario)


def test_server_binds_loopback_by_default() -> None:
    server = FaultProxyServer()
    assert (server.host, server.port) == ("127.0.0.1", 8474)
    assert server.url == "http://127.0.0.1:8474"

    async def scenario(api: ApiClient, upstream: Upstream, server: FaultProxyServer) -> None:
        status, body = await api.post("/proxies", {"name": "n", "upstream": upstream.address})
        assert status == 201 and body["listen"].startswith("127.0.0.1:")
        status, body = await api.post("/proxies", {"name": "m", "listen": ":0",
                                                   "upstream": upstream.address})
        assert status == 201 and body["listen"].startswith("127.0.0.1:")

    run(scenario)
