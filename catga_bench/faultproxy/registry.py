"""The set of proxies, with the semantics of Toxiproxy's API operations on it.

Mirrors ``proxy_collection.go`` and the handlers of ``api.go``: names are unique (409
``proxy already exists``), ``/populate`` validates every item before changing anything and
replaces an existing proxy only when its ``listen`` or ``upstream`` differ, ``/reset``
re-enables every proxy and removes every toxic. Operations are serialised by one lock, so a
client sees each one whole.
"""

from __future__ import annotations

import asyncio
import random

from catga_bench.faultproxy.model import (
    ERR_PROXY_ALREADY_EXISTS,
    ERR_PROXY_NOT_FOUND,
    ProxyInput,
    ToxicSpec,
    parse_new_toxic,
    parse_toxic_update,
)
from catga_bench.faultproxy.proxy import Proxy


class ProxyRegistry:
    """Every proxy of one fault-proxy server, by name. ``rng`` draws toxicity and jitter."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.proxies: dict[str, Proxy] = {}
        self.lock = asyncio.Lock()

    def get(self, name: str) -> Proxy:
        """The proxy called ``name``; 404 ``proxy not found`` when there is none."""
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ERR_PROXY_NOT_FOUND
        return proxy

    async def create(self, fields: ProxyInput) -> Proxy:
        """Create a proxy (started when ``fields.enabled``); 409 when the name is taken."""
        async with self.lock:
            if fields.name in self.proxies:
                raise ERR_PROXY_ALREADY_EXISTS
            return await self._create(fields)

    async def _create(self, fields: ProxyInput) -> Proxy:
        proxy = Proxy(fields.name, fields.listen, fields.upstream, self.rng)
        if fields.enabled:
            await proxy.start()
        self.proxies[proxy.name] = proxy
        return proxy

    async def populate(self, items: list[ProxyInput]) -> list[Proxy]:
        """Create or replace many proxies (already validated); returns them in order.

        An existing proxy with the same listen and upstream is kept as it is (toxics and
        enabled state included); one that differs is stopped and replaced.
        """
        out: list[Proxy] = []
        async with self.lock:
            for fields in items:
                existing = self.proxies.get(fields.name)
                if existing is not None:
                    if existing.listen == fields.listen and existing.upstream == fields.upstream:
                        out.append(existing)
                        continue
                    await existing.stop()
                    del self.proxies[fields.name]
                out.append(await self._create(fields))
        return out

    async def update(self, name: str, fields: ProxyInput) -> Proxy:
        """Update a proxy's listen/upstream/enabled."""
        async with self.lock:
            proxy = self.get(name)
            await proxy.update(fields)
            return proxy

    async def delete(self, name: str) -> None:
        """Stop and forget a proxy."""
        async with self.lock:
            proxy = self.get(name)
            await proxy.stop()
            del self.proxies[name]

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic (``POST /reset``)."""
        async with self.lock:
            for proxy in list(self.proxies.values()):
                await proxy.start()
                proxy.reset_toxics()

    async def add_toxic(self, proxy_name: str, body: bytes) -> ToxicSpec:
        """Add a toxic from a request body to a proxy."""
        async with self.lock:
            proxy = self.get(proxy_name)
            spec = parse_new_toxic(body, lambda name: name in proxy.toxics)
            proxy.add_toxic(spec)
            return spec

    async def update_toxic(self, proxy_name: str, toxic_name: str, body: bytes) -> ToxicSpec:
        """Update a toxic's attributes/toxicity from a request body."""
        async with self.lock:
            proxy = self.get(proxy_name)
            spec = parse_toxic_update(body, proxy.get_toxic(toxic_name))
            proxy.update_toxic(spec)
            return spec

    async def remove_toxic(self, proxy_name: str, toxic_name: str) -> None:
        """Remove one toxic."""
        async with self.lock:
            self.get(proxy_name).remove_toxic(toxic_name)

    async def close(self) -> None:
        """Stop every proxy (server shutdown); the proxies stay listed."""
        async with self.lock:
            for proxy in self.proxies.values():
                await proxy.stop()
