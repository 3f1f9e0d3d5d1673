"""The Toxiproxy v2 HTTP API over a :class:`~catga_bench.faultproxy.registry.ProxyRegistry`.

Routes, bodies and status codes as Toxiproxy's ``api.go`` (README "HTTP API", "Endpoints"):

====================================  ======  ==========================================
``GET /proxies``                      200     object keyed by proxy name
``POST /proxies``                     201     the proxy (409 when the name is taken)
``POST /populate``                    201     ``{"proxies": [...]}``
``GET /proxies/{proxy}``              200     the proxy with its toxics
``POST|PATCH /proxies/{proxy}``       200     the updated proxy
``DELETE /proxies/{proxy}``           204
``GET /proxies/{proxy}/toxics``       200     list of toxics
``POST /proxies/{proxy}/toxics``      200     the toxic (200, not 201, as Toxiproxy)
``GET /proxies/{proxy}/toxics/{t}``   200     the toxic
``POST|PATCH .../toxics/{t}``         200     the updated toxic
``DELETE .../toxics/{t}``             204
``POST /reset``                       204     every proxy enabled, every toxic removed
``GET /version``                      200     ``{"version": "..."}``
====================================  ======  ==========================================

Errors are ``{"error": message, "status": code}`` with that code (400, 404, 409, 500). As
Toxiproxy, requests whose User-Agent starts with ``Mozilla/`` get 403 (a browser page must not
be able to drive the proxy), an unknown path 404 ``404 page not found``, a known path with
another method 405.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from catga_bench._version import __version__
from catga_bench.faultproxy.httpserver import Request, Response
from catga_bench.faultproxy.model import (
    ApiError,
    decode_json,
    parse_new_proxy,
    parse_populate,
    parse_proxy_update,
)
from catga_bench.faultproxy.registry import ProxyRegistry

#: Reported by ``GET /version``: Toxiproxy API major version 2, then this implementation.
VERSION = f"2.0.0+catga-bench.{__version__}"

Route = Callable[..., Awaitable[Response]]


def _json(status: int, value: Any) -> Response:
    return Response(status, json.dumps(value).encode() + b"\n")


def _error(err: ApiError, **extra: Any) -> Response:
    return _json(err.status, {**err.to_json(), **extra})


class ToxiproxyApi:
    """Request handler implementing the API; call it with a :class:`Request`."""

    def __init__(self, registry: ProxyRegistry) -> None:
        self.registry = registry
        self._routes: list[tuple[re.Pattern[str], dict[str, Route]]] = [
            (re.compile(r"/reset"), {"POST": self.reset}),
            (re.compile(r"/version"), {"GET": self.version}),
            (re.compile(r"/populate"), {"POST": self.populate}),
            (re.compile(r"/proxies"), {"GET": self.proxy_index, "POST": self.proxy_create}),
            (
                re.compile(r"/proxies/(?P<proxy>[^/]+)"),
                {
                    "GET": self.proxy_show,
                    "POST": self.proxy_update,
                    "PATCH": self.proxy_update,
                    "DELETE": self.proxy_delete,
                },
            ),
            (
                re.compile(r"/proxies/(?P<proxy>[^/]+)/toxics"),
                {"GET": self.toxic_index, "POST": self.toxic_create},
            ),
            (
                re.compile(r"/proxies/(?P<proxy>[^/]+)/toxics/(?P<toxic>[^/]+)"),
                {
                    "GET": self.toxic_show,
                    "POST": self.toxic_update,
                    "PATCH": self.toxic_update,
                    "DELETE": self.toxic_delete,
                },
            ),
        ]

    async def __call__(self, request: Request) -> Response:
        """Route one request and turn an :class:`ApiError` into its JSON answer."""
        if request.headers.get("user-agent", "").startswith("Mozilla/"):
            return Response(403, b"User agent not allowed\n", "text/plain; charset=utf-8")
        for pattern, methods in self._routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            route = methods.get(request.method)
            if route is None:
                return Response(405, b"", "text/plain; charset=utf-8")
            try:
                return await route(request, **match.groupdict())
            except ApiError as err:
                return _error(err)
        return Response(404, b"404 page not found\n", "text/plain; charset=utf-8")

    # -- server ----------------------------------------------------------------------------

    async def version(self, request: Request) -> Response:
        """``GET /version``."""
        return Response(200, json.dumps({"version": VERSION}).encode() + b"\n",
                        "application/json;charset=utf-8")

    async def reset(self, request: Request) -> Response:
        """``POST /reset``: enable every proxy, remove every toxic."""
        await self.registry.reset()
        return Response(204)

    async def populate(self, request: Request) -> Response:
        """``POST /populate``: create or replace a list of proxies."""
        try:
            items = parse_populate(request.body)
            proxies = await self.registry.populate(items)
        except ApiError as err:
            return _error(err, proxies=None)
        return _json(201, {"proxies": [p.to_json() for p in proxies]})

    # -- proxies ---------------------------------------------------------------------------

    async def proxy_index(self, request: Request) -> Response:
        """``GET /proxies``: every proxy, keyed by name."""
        return _json(200, {name: p.to_json() for name, p in self.registry.proxies.items()})

    async def proxy_create(self, request: Request) -> Response:
        """``POST /proxies``."""
        proxy = await self.registry.create(parse_new_proxy(decode_json(request.body)))
        return _json(201, proxy.to_json())

    async def proxy_show(self, request: Request, proxy: str) -> Response:
        """``GET /proxies/{proxy}``."""
        return _json(200, self.registry.get(proxy).to_json())

    async def proxy_update(self, request: Request, proxy: str) -> Response:
        """``POST|PATCH /proxies/{proxy}``: change listen, upstream or enabled."""
        current = self.registry.get(proxy)
        fields = parse_proxy_update(request.body, current.fields())
        updated = await self.registry.update(proxy, fields)
        return _json(200, updated.to_json())

    async def proxy_delete(self, request: Request, proxy: str) -> Response:
        """``DELETE /proxies/{proxy}``."""
        await self.registry.delete(proxy)
        return Response(204)

    # -- toxics ----------------------------------------------------------------------------

    async def toxic_index(self, request: Request, proxy: str) -> Response:
        """``GET /proxies/{proxy}/toxics``."""
        return _json(200, [t.to_json() for t in self.registry.get(proxy).toxic_list()])

    async def toxic_create(self, request: Request, proxy: str) -> Response:
        """``POST /proxies/{proxy}/toxics`` (answers 200, as Toxiproxy does)."""
        spec = await self.registry.add_toxic(proxy, request.body)
        return _json(200, spec.to_json())

    async def toxic_show(self, request: Request, proxy: str, toxic: str) -> Response:
        """``GET /proxies/{proxy}/toxics/{toxic}``."""
        return _json(200, self.registry.get(proxy).get_toxic(toxic).to_json())

    async def toxic_update(self, request: Request, proxy: str, toxic: str) -> Response:
        """``POST|PATCH /proxies/{proxy}/toxics/{toxic}``: new attributes and/or toxicity."""
        spec = await self.registry.update_toxic(proxy, toxic, request.body)
        return _json(200, spec.to_json())

    async def toxic_delete(self, request: Request, proxy: str, toxic: str) -> Response:
        """``DELETE /proxies/{proxy}/toxics/{toxic}``."""
        await self.registry.remove_toxic(proxy, toxic)
        return Response(204)
