"""Discovery in Redis: a sorted set scored by the Redis server's time of the last heartbeat,
plus a hash of node JSON, both written and pruned by Lua scripts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from core.cluster.discovery._base import Discovery, node_from_json, node_json
from core.cluster.routing import NodeInfo
from core.transport.base import BrokerUnavailable, TransportError

if TYPE_CHECKING:
    from redis.asyncio import Redis

_log = logging.getLogger("catga.discovery")


# KEYS: zset, info hash. ARGV: node_id, node json. Returns the server time as a string.
_REDIS_PUT = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], string.format('%.6f', now), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return string.format('%.6f', now)
"""

# KEYS: zset, info hash. ARGV: ttl seconds. Returns {node_id, score, json-or-false, ...}.
_REDIS_NODES = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cutoff = string.format('%.6f', now - tonumber(ARGV[1]))
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff)
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff)
  for _, id in ipairs(expired) do redis.call('HDEL', KEYS[2], id) end
end
local live = redis.call('ZRANGEBYSCORE', KEYS[1], cutoff, '+inf', 'WITHSCORES')
local out = {}
for i = 1, #live, 2 do
  out[#out + 1] = live[i]
  out[#out + 1] = live[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], live[i])
end
return out
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisDiscovery(Discovery):
    """Discovery in Redis: sorted set ``key`` scored by last heartbeat + hash ``key:info``.

    Args:
        client_or_url: a ``redis.asyncio.Redis`` (not closed by :meth:`close`) or a URL
            (``redis://host:port/db``; the client is created by :meth:`connect` and closed by
            :meth:`close`).
        key: sorted-set key; node JSON lives in the hash ``f"{key}:info"``.
        ttl_s: seconds after its last heartbeat a node stops being live.
        connect_timeout_s: seconds to open a connection.
        op_timeout_s: seconds one command may take (socket timeout; URL form only).

    Times are the Redis server's (``TIME`` inside the scripts). Under Redis Cluster both keys
    must hash to one slot: use a hash tag such as ``key="{catga}:nodes"``.

    Raises:
        ValueError: empty ``key`` or bad timeouts.
    """

    backend = "redis"

    def __init__(self, client_or_url: Redis | str, *, key: str = "catga:nodes",
                 ttl_s: float = 10.0, connect_timeout_s: float = 2.0,
                 op_timeout_s: float = 5.0) -> None:
        super().__init__(ttl_s=ttl_s)
        if not key:
            raise ValueError("key must not be empty")
        if not (connect_timeout_s > 0 and op_timeout_s > 0):
            raise ValueError("connect_timeout_s and op_timeout_s must be > 0")
        self.key = key
        self.info_key = f"{key}:info"
        self.connect_timeout_s = float(connect_timeout_s)
        self.op_timeout_s = float(op_timeout_s)
        self._owns_client = isinstance(client_or_url, str)
        self._client: Redis | None = None if isinstance(client_or_url, str) else client_or_url
        if isinstance(client_or_url, str):
            self.url = client_or_url
        else:
            kw = client_or_url.connection_pool.connection_kwargs
            self.url = f"redis://{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"
        self._put_script: Any = None
        self._nodes_script: Any = None

    async def connect(self) -> None:
        """Create the client (URL form) and ``PING`` it.

        Raises:
            BrokerUnavailable: no connection or no valid answer within the timeouts.
        """
        import redis.asyncio as redis_asyncio

        if self._client is None:
            self._client = redis_asyncio.Redis.from_url(
                self.url, socket_connect_timeout=self.connect_timeout_s,
                socket_timeout=self.op_timeout_s)
        client = self._client
        try:
            await asyncio.wait_for(client.ping(), self.connect_timeout_s + self.op_timeout_s)
        except Exception as exc:
            if self._owns_client:
                with contextlib.suppress(Exception):
                    await client.aclose()
                self._client = None
            raise BrokerUnavailable(self.url, f"{type(exc).__name__}: {exc}") from exc
        self._put_script = client.register_script(_REDIS_PUT)
        self._nodes_script = client.register_script(_REDIS_NODES)

    async def _disconnect(self) -> None:
        client, self._put_script, self._nodes_script = self._client, None, None
        if self._owns_client and client is not None:
            self._client = None
            with contextlib.suppress(Exception):
                await client.aclose()

    def _error(self, exc: Exception, what: str) -> TransportError:
        import redis.exceptions as redis_errors

        if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError
                      | OSError):
            return BrokerUnavailable(self.url, f"{what}: {type(exc).__name__}: {exc}")
        return TransportError(f"redis {self.url} {what}: {type(exc).__name__}: {exc}")

    def _scripts(self) -> tuple[Any, Any]:
        if self._put_script is None or self._nodes_script is None:
            raise RuntimeError("RedisDiscovery is not connected: use `async with` or connect()")
        return self._put_script, self._nodes_script

    async def _put(self, node: NodeInfo) -> NodeInfo:
        put, _ = self._scripts()
        try:
            now = await put(keys=[self.key, self.info_key], args=[node.node_id, node_json(node)])
        except Exception as exc:
            raise self._error(exc, "heartbeat") from exc
        return replace(node, last_seen_unix_s=float(_text(now)))

    async def _remove(self, node_id: str) -> None:
        self._scripts()  # raises when not connected
        assert self._client is not None
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zrem(self.key, node_id)
                pipe.hdel(self.info_key, node_id)
                await pipe.execute()
        except Exception as exc:
            raise self._error(exc, "deregister") from exc

    async def nodes(self) -> list[NodeInfo]:
        """Live nodes; members older than ``ttl_s`` are deleted in the same script."""
        _, script = self._scripts()
        try:
            flat = await script(keys=[self.key, self.info_key], args=[repr(self.ttl_s)])
        except Exception as exc:
            raise self._error(exc, "listing nodes") from exc
        found: list[NodeInfo] = []
        for i in range(0, len(flat), 3):
            node_id, score, raw = _text(flat[i]), float(_text(flat[i + 1])), flat[i + 2]
            if raw is None:  # written by someone else without the info hash
                _log.warning("redis discovery: node %r has no info in %s", node_id,
                             self.info_key)
                continue
            try:
                found.append(node_from_json(raw, score))
            except (ValueError, KeyError, TypeError) as exc:
                _log.warning("redis discovery: bad info for node %r: %s", node_id, exc)
        return sorted(found, key=lambda n: n.node_id)
