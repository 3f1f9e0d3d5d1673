"""Redis-backed idempotency store: exactly-once (QoS 2) across processes sharing one Redis.

Same three states and semantics as :mod:`core.idempotency` (absent -> in flight -> done with the
cached ``Result``), held in one Redis string per key (``key_prefix + str(key)``):

* **claim** — one round trip: ``SET key L<token> NX PX lease_ms GET`` (Redis >= 7; older
  servers: ``SET NX`` then ``GET``). A nil reply means the caller owns the key. The lease
  (``lease_s``) frees the key if the owner dies: it must exceed the longest handler run, or a
  second process may claim the key while the first still runs (then both run).
* **done** — ``R`` + the ``Result`` as JSON (orjson: ``ok``, ``v`` value, or error ``code`` /
  ``message`` / ``retryable``), ``PX ttl_ms``. Values orjson cannot serialise are stored as None
  (flag ``dropped``; counted in ``unserialisable``); dataclasses, enums, datetimes come back in
  their JSON form (dicts, values, ISO strings), so a duplicate sees the JSON shape of the value.
* **in flight elsewhere** — a duplicate polls (2 ms doubling to 50 ms) until the key holds a
  result (returned as a hit) or is gone (it claims it itself). Duplicates in the *same* store
  instance wait on a local future instead of polling.

The protocol's ``complete`` / ``abort`` are synchronous (``core.mediator`` calls them without
``await``), so here they resolve local waiters at once and schedule the Redis write as a task;
:meth:`RedisIdempotencyStore.flush` awaits the writes. If the process dies (or Redis fails)
before a ``complete`` write lands, the in-flight marker expires after ``lease_s`` and a
redelivery runs the handler again (at least once, never lost). ``abort`` deletes the marker only
if it is still this claim's (compare-and-delete script), so it never frees another process's
claim taken after an expired lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
import uuid
from collections.abc import Hashable
from types import TracebackType
from typing import Any, Self

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from core.result import Error, ErrorCode, Result
from core.transport.base import BrokerUnavailable, TransportError

__all__ = ["RedisIdempotencyStore"]

_log = logging.getLogger("catga.idempotency.redis")

_LEASE = b"L"
_DONE = b"R"
_POLL_MIN_S = 0.002
_POLL_MAX_S = 0.05
# KEYS[1] the key, ARGV[1] this claim's marker: delete only our own claim.
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def encode_result(result: Result[Any]) -> tuple[bytes, bool]:
    """``(payload, value_dropped)``: the stored form of ``result``."""
    error = result.error
    if error is not None:
        doc: dict[str, Any] = {"ok": False, "code": str(error.code.value),
                               "message": error.message, "retryable": error.retryable}
        return _DONE + orjson.dumps(doc), False
    try:
        return _DONE + orjson.dumps({"ok": True, "v": result.value},
                                    option=orjson.OPT_NON_STR_KEYS), False
    except TypeError:  # orjson.JSONEncodeError: not JSON-serialisable
        return _DONE + orjson.dumps({"ok": True, "v": None, "dropped": True}), True


def decode_result(payload: bytes) -> Result[Any]:
    """The ``Result`` stored by :func:`encode_result` (``R`` prefix included)."""
    doc = orjson.loads(payload[1:])
    if doc.get("ok"):
        value = doc.get("v")
        return Result.OK if value is None else Result.success(value)
    try:
        code = ErrorCode(doc.get("code"))
    except ValueError:
        code = ErrorCode.HANDLER_FAILED
    return Result(None, Error(code, str(doc.get("message", "")), bool(doc.get("retryable"))))


class _Claim:
    """A key this store instance owns: ``outcome`` resolves on complete (the Result) or abort
    (None); ``released`` once the Redis write for it finished (or failed)."""

    __slots__ = ("marker", "outcome", "released")

    def __init__(self, marker: bytes, loop: asyncio.AbstractEventLoop) -> None:
        self.marker = marker
        self.outcome: asyncio.Future[Result[Any] | None] = loop.create_future()
        self.released: asyncio.Future[None] = loop.create_future()


class RedisIdempotencyStore:
    """Idempotency store in Redis, implementing :class:`core.idempotency.IdempotencyStore`.

    Args:
        client_or_url: a ``redis.asyncio.Redis`` (not closed by this store) or a URL (the store
            creates and owns the client; use ``async with`` or :meth:`aclose`).
        key_prefix: prepended to ``str(key)``.
        ttl_s: how long a completed key is remembered (the dedup window).
        lease_s: how long an in-flight claim holds without completing (owner crash recovery).

    Attributes:
        hits: duplicates answered from the store. misses: claims won. errors: background writes
        that failed. unserialisable: results whose value could not be stored (kept as None).

    Raises:
        ValueError: an argument out of range. ``begin`` raises BrokerUnavailable when Redis
        cannot be reached.
    """

    def __init__(self, client_or_url: aioredis.Redis | str, *, key_prefix: str = "catga:idem:",
                 ttl_s: float = 600.0, lease_s: float = 30.0) -> None:
        for name, value in (("ttl_s", ttl_s), ("lease_s", lease_s)):
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not math.isfinite(value) or value <= 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not isinstance(key_prefix, str):
            raise ValueError(f"key_prefix must be a string, got {key_prefix!r}")
        if isinstance(client_or_url, str):
            if not client_or_url.startswith(("redis://", "rediss://", "unix://")):
                raise ValueError(f"client_or_url must be a redis.asyncio.Redis or a redis:// "
                                 f"URL, got {client_or_url!r}")
            self.url = client_or_url
            self._client = aioredis.Redis.from_url(
                client_or_url, socket_connect_timeout=2.0, socket_timeout=5.0,
                retry=Retry(NoBackoff(), 0), decode_responses=False)
            self._owns_client = True
        elif isinstance(client_or_url, aioredis.Redis):
            kwargs = client_or_url.connection_pool.connection_kwargs
            self.url = f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
            self._client = client_or_url
            self._owns_client = False
        else:
            raise ValueError(f"client_or_url must be a redis.asyncio.Redis or a URL, "
                             f"got {type(client_or_url).__name__}")
        self.key_prefix = key_prefix
        self.ttl_s = float(ttl_s)
        self.lease_s = float(lease_s)
        self._ttl_ms = max(1, int(self.ttl_s * 1000))
        self._lease_ms = max(1, int(self.lease_s * 1000))
        self._claims: dict[str, _Claim] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._marker_prefix = _LEASE + uuid.uuid4().hex[:12].encode() + b":"
        self._seq = itertools.count(1)
        self._nx_get = True  # SET NX GET (Redis >= 7) until the server says otherwise
        self._release = self._client.register_script(_RELEASE_SCRIPT)
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self.unserialisable = 0

    def _key(self, key: Hashable) -> str:
        return f"{self.key_prefix}{key}"

    # -- the protocol -------------------------------------------------------------------------

    async def begin(self, key: Hashable) -> Result[Any] | None:
        """Claim ``key``: None if the caller now owns it (it must call :meth:`complete` or
        :meth:`abort`), or the cached ``Result`` of an earlier success (waiting while another
        owner is in flight)."""
        k = self._key(key)
        loop = asyncio.get_running_loop()
        delay = _POLL_MIN_S
        give_up = time.monotonic() + 2 * self.lease_s + 5.0
        while True:
            claim = self._claims.get(k)
            if claim is not None:  # in flight in this very store: wait locally
                outcome = await asyncio.shield(claim.outcome)
                if outcome is not None:
                    self.hits += 1
                    return outcome
                await asyncio.shield(claim.released)
                continue
            marker = self._marker_prefix + str(next(self._seq)).encode()
            try:
                raw = await self._claim(k, marker)
            except (RedisError, OSError) as exc:
                raise BrokerUnavailable(self.url, f"claim {k}: {exc or type(exc).__name__}") \
                    from exc
            if raw is None:
                self._claims[k] = _Claim(marker, loop)
                self.misses += 1
                return None
            if isinstance(raw, str):
                raw = raw.encode()
            if raw[:1] == _DONE:
                self.hits += 1
                return decode_result(raw)
            if time.monotonic() > give_up:
                raise TransportError(f"idempotency key {k!r} stayed in flight for over "
                                     f"{2 * self.lease_s + 5:g} s")
            await asyncio.sleep(delay)  # in flight in another process: poll
            delay = min(delay * 2, _POLL_MAX_S)

    async def _claim(self, k: str, marker: bytes) -> Any:
        """None if ``marker`` was set (we own ``k``), else the value ``k`` holds (or None if
        it vanished between the two commands of the pre-7.0 fallback -- then we retry)."""
        if self._nx_get:
            try:
                return await self._client.set(k, marker, nx=True, px=self._lease_ms, get=True)
            except ResponseError as exc:
                if "syntax" not in str(exc).lower():
                    raise
                self._nx_get = False  # Redis < 7: NX and GET cannot be combined
        if await self._client.set(k, marker, nx=True, px=self._lease_ms):
            return None
        value = await self._client.get(k)
        return b"" if value is None else value  # b"": neither done nor ours -> poll/retry

    def complete(self, key: Hashable, result: Result[Any]) -> None:
        """Record ``result`` for ``key``: local waiters get it now, Redis shortly after (a
        background ``SET PX ttl``; see :meth:`flush`)."""
        k = self._key(key)
        claim = self._claims.get(k)
        if claim is not None and not claim.outcome.done():
            claim.outcome.set_result(result)
        payload, dropped = encode_result(result)
        if dropped:
            self.unserialisable += 1
            _log.warning("value of %s is not JSON-serialisable; duplicates get None", k)
        self._schedule(self._write(k, claim, payload))

    def abort(self, key: Hashable) -> None:
        """Release ``key`` after a failure: local waiters retry the claim now; the Redis
        marker is deleted in the background (only if it is still this claim's)."""
        k = self._key(key)
        claim = self._claims.get(k)
        if claim is None:
            return
        if not claim.outcome.done():
            claim.outcome.set_result(None)
        self._schedule(self._drop(k, claim))

    # -- background writes --------------------------------------------------------------------

    def _schedule(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, k: str, claim: _Claim | None, payload: bytes) -> None:
        try:
            await self._client.set(k, payload, px=self._ttl_ms)
        except (RedisError, OSError) as exc:
            self.errors += 1
            _log.error("could not store the result of %s (a redelivery after the %g s lease "
                       "runs the handler again): %s", k, self.lease_s, exc)
        finally:
            self._forget(k, claim)

    async def _drop(self, k: str, claim: _Claim) -> None:
        try:
            await self._release(keys=[k], args=[claim.marker])
        except (RedisError, OSError) as exc:
            self.errors += 1
            _log.error("could not release %s (it frees itself after the %g s lease): %s", k,
                       self.lease_s, exc)
        finally:
            self._forget(k, claim)

    def _forget(self, k: str, claim: _Claim | None) -> None:
        if claim is None:
            return
        if self._claims.get(k) is claim:
            del self._claims[k]
        if not claim.released.done():
            claim.released.set_result(None)

    async def flush(self) -> None:
        """Wait until every scheduled ``complete`` / ``abort`` write has finished."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    # -- lifecycle ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Flush pending writes; close the client if this store created it. Idempotent."""
        await self.flush()
        if self._owns_client:
            with contextlib.suppress(Exception):
                await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()
