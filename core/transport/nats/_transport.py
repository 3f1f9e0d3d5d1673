"""NatsTransport: connection, publish, request, flush, streams, subscribe, dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, api

from core.messages import QoS
from core.transport.base import (
    H_DLQ_DELIVERIES,
    H_DLQ_REASON,
    H_DLQ_SUBJECT,
    BrokerUnavailable,
    DeliveryHandler,
    Reply,
    RequestTimeout,
    Subscription,
    Transport,
    TransportError,
)
from core.transport.nats._delivery import DeadLetter
from core.transport.nats._subscription import CoreSubscription, JetStreamSubscription

_log = logging.getLogger("catga.transport.nats")

#: nats-py's own timeout for a flush that outlived our wait (see NatsTransport.flush)
_FLUSH_BACKGROUND_S = 300.0
_INITIAL_CONNECT_ATTEMPTS = 3
_SUB_PENDING_MSGS = 1_000_000
_SUB_PENDING_BYTES = 512 * 1024 * 1024
_MAX_HEADER_VALUE = 1024
_STREAM_CONFLICT = 10058  # stream name already in use with a different configuration
_CONSUMER_EXISTS = 10148  # consumer name already in use (different configuration)
_ADVISORY_MAX_DELIVERIES = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
_BAD_STREAM_CHARS = re.compile(r"[^A-Z0-9_-]")
_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def _header_value(text: str) -> str:
    """A header-safe one-line value (no CR/LF), at most 1024 characters."""
    return " ".join(text.split())[:_MAX_HEADER_VALUE]


def _name(text: str) -> str:
    """A NATS consumer/queue name: anything not ``[A-Za-z0-9_-]`` becomes ``_``."""
    return _BAD_NAME_CHARS.sub("_", text)


class NatsTransport(Transport):
    """The NATS implementation of :class:`~core.transport.base.Transport`.

    Args:
        url: server URL (``nats://host:port``).
        client_name: connection name shown by the server's monitoring.
        ack_wait_s: seconds a QoS >= 1 delivery may stay unsettled before it is redelivered.
        max_deliver: deliveries of one message before it is dead-lettered (>= 1).
        stream_prefix: prefix of stream names (``<PREFIX>_<FAMILY>``, ``<PREFIX>_DLQ``).
        dlq_prefix: subject prefix of dead letters.
        duplicate_window_s: seconds JetStream remembers ``Nats-Msg-Id`` for publisher dedup.
        connect_timeout_s: seconds one connection attempt may take.
        reconnect_wait_s: seconds between reconnection attempts.
        max_reconnect_attempts: reconnection attempts after a drop before the connection is
            given up (then everything raises BrokerUnavailable); -1 retries forever.
        api_timeout_s: seconds to wait for a PubAck or a JetStream API reply.

    Raises:
        ValueError: an argument is out of range (the message names it).
    """

    name = "nats"

    def __init__(self, url: str = "nats://127.0.0.1:4222", *, client_name: str = "catga",
                 ack_wait_s: float = 30.0, max_deliver: int = 5, stream_prefix: str = "CATGA",
                 dlq_prefix: str = "catga.dlq", duplicate_window_s: float = 120.0,
                 connect_timeout_s: float = 2.0, reconnect_wait_s: float = 0.5,
                 max_reconnect_attempts: int = 120, api_timeout_s: float = 5.0) -> None:
        super().__init__()
        if not url or "://" not in url:
            raise ValueError(f"url must look like nats://host:port, got {url!r}")
        if not client_name:
            raise ValueError("client_name must not be empty")
        for pname, value in (("ack_wait_s", ack_wait_s), ("duplicate_window_s", duplicate_window_s),
                             ("connect_timeout_s", connect_timeout_s),
                             ("api_timeout_s", api_timeout_s)):
            if not value > 0:
                raise ValueError(f"{pname} must be > 0, got {value!r}")
        if not reconnect_wait_s >= 0:
            raise ValueError(f"reconnect_wait_s must be >= 0, got {reconnect_wait_s!r}")
        if max_deliver < 1:
            raise ValueError(f"max_deliver must be >= 1, got {max_deliver!r}")
        if max_reconnect_attempts < -1:
            raise ValueError("max_reconnect_attempts must be >= 0 or -1 (forever), "
                             f"got {max_reconnect_attempts!r}")
        if not stream_prefix or _BAD_STREAM_CHARS.search(stream_prefix.upper()):
            raise ValueError(f"stream_prefix must match [A-Za-z0-9_-]+, got {stream_prefix!r}")
        if not dlq_prefix or any(c in dlq_prefix for c in " *>") or "" in dlq_prefix.split("."):
            raise ValueError(f"dlq_prefix must be a literal dotted subject, got {dlq_prefix!r}")
        self.url = url
        self.client_name = client_name
        self.ack_wait_s = float(ack_wait_s)
        self.max_deliver = max_deliver
        self.stream_prefix = stream_prefix
        self.dlq_prefix = dlq_prefix
        self.dlq_stream = f"{stream_prefix}_DLQ".upper()
        self.duplicate_window_s = float(duplicate_window_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.reconnect_wait_s = float(reconnect_wait_s)
        self.max_reconnect_attempts = max_reconnect_attempts
        self.api_timeout_s = float(api_timeout_s)
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._streams: set[str] = set()  # streams known to exist
        self._ready: dict[str, str] = {}  # subject -> its (existing) stream
        self._stream_lock = asyncio.Lock()
        self._subs: set[CoreSubscription | JetStreamSubscription] = set()
        self._closing = False
        self._flushes: set[asyncio.Task[None]] = set()  # flushes outliving their caller's wait
        self._connecting = False
        self._down = False

    # -- connection ---------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect to ``url`` (no-op when connected).

        Tries 3 times, at most ``3 * connect_timeout_s + 2 * reconnect_wait_s`` in all; later drops
        are retried by nats-py up to ``max_reconnect_attempts`` times.

        Raises:
            BrokerUnavailable: the server cannot be reached or does not answer.
        """
        if self._nc is not None and not self._nc.is_closed:
            return
        nc = Client()
        # every attempt may use its whole timeout (a loaded proxy or broker answers slowly);
        # a refused connection fails each attempt at once
        budget = (_INITIAL_CONNECT_ATTEMPTS * self.connect_timeout_s
                  + (_INITIAL_CONNECT_ATTEMPTS - 1) * self.reconnect_wait_s + 0.5)
        self._connecting = True
        try:
            await asyncio.wait_for(nc.connect(
                servers=[self.url], name=self.client_name, allow_reconnect=True,
                connect_timeout=self.connect_timeout_s,  # type: ignore[arg-type]
                reconnect_time_wait=self.reconnect_wait_s,  # type: ignore[arg-type]
                max_reconnect_attempts=_INITIAL_CONNECT_ATTEMPTS - 1,
                error_cb=self._on_error, disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected, closed_cb=self._on_closed,
                pending_size=8 * 1024 * 1024,
            ), timeout=budget)
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            with contextlib.suppress(Exception):
                await nc.close()
            reason = (f"no connection within {budget:g} s" if isinstance(exc, TimeoutError)
                      else f"{type(exc).__name__}: {exc}".rstrip(": "))
            raise BrokerUnavailable(self.url, reason) from exc
        finally:
            self._connecting = False
        # From now on nats-py reconnects with the configured budget.
        nc.options["max_reconnect_attempts"] = self.max_reconnect_attempts
        self._nc = nc
        self._js = nc.jetstream(timeout=self.api_timeout_s)
        self._closing = self._down = False
        _log.info("connected to %s as %r", self.url, self.client_name)

    async def _on_error(self, exc: Exception) -> None:
        nc = self._nc
        if (self._connecting or nc is None or nc.is_reconnecting
                or isinstance(exc, nats.errors.UnexpectedEOF)):
            _log.debug("nats %s: %r", self.url, exc)
        else:
            self.stats.extra["async_errors"] = self.stats.extra.get("async_errors", 0) + 1
            _log.warning("nats %s error: %r", self.url, exc)

    async def _on_disconnected(self) -> None:
        if self._connecting or self._closing or self._down:
            return  # our own close, or nats-py reporting a dropped connection's final close
        self._down = True
        self.stats.disconnects += 1
        _log.warning("disconnected from %s; reconnecting (up to %d attempts, %g s apart)",
                     self.url, self.max_reconnect_attempts, self.reconnect_wait_s)

    async def _on_reconnected(self) -> None:
        self._down = False
        self.stats.reconnects += 1
        _log.info("reconnected to %s", self.url)

    async def _on_closed(self) -> None:
        if not (self._closing or self._connecting):
            _log.error("connection to %s closed for good (reconnect budget spent?)", self.url)

    def _client(self) -> tuple[Client, JetStreamContext]:
        if self._nc is None or self._js is None:
            raise TransportError("NatsTransport is not connected: call connect() first")
        if self._nc.is_closed:
            raise BrokerUnavailable(self.url, "connection is closed")
        return self._nc, self._js

    def _error(self, exc: BaseException, what: str) -> TransportError:
        """Map a nats-py failure of ``what`` to the seam's errors."""
        if isinstance(exc, TransportError):
            return exc
        if isinstance(exc, nats.errors.ConnectionClosedError | nats.errors.NoServersError) or (
                self._nc is not None and self._nc.is_closed):
            return BrokerUnavailable(self.url, f"{what}: connection closed")
        if isinstance(exc, nats.errors.OutboundBufferLimitError):
            return BrokerUnavailable(self.url, f"{what}: reconnecting and the buffer is full")
        if isinstance(exc, TimeoutError):
            return TransportError(f"{what}: no answer from the broker within "
                                  f"{self.api_timeout_s:g} s")
        if isinstance(exc, nats.js.errors.NoStreamResponseError):
            return TransportError(f"{what}: no JetStream stream answered (not stored)")
        return TransportError(f"{what}: {type(exc).__name__}: {exc}")

    # -- publish / request --------------------------------------------------------------------

    async def publish(self, subject: str, headers: Mapping[str, str], body: bytes, *,
                      qos: QoS = QoS.AT_MOST_ONCE) -> None:
        """Publish one message. QoS 0: handed to the client's write buffer. QoS 1/2: returns
        after the JetStream PubAck (stored, or recognised as a ``Nats-Msg-Id`` duplicate).

        Raises:
            ValueError: a QoS >= 1 subject is not ``<prefix>.<family>.<rest>``.
            BrokerUnavailable: the connection is closed (reconnect budget spent).
            TransportError: not stored (no PubAck within ``api_timeout_s``, refused).
        """
        nc, js = self._client()
        hdrs = dict(headers) if headers else None
        try:
            if qos == QoS.AT_MOST_ONCE:
                await nc.publish(subject, body, headers=hdrs)
            else:
                await self._ensure_stream(subject)
                try:
                    await js.publish(subject, body, headers=hdrs)
                except nats.js.errors.NoStreamResponseError:
                    # The stream vanished (a broker with a fresh store): recreate, retry once.
                    self._streams.discard(self._stream_for(subject)[0])
                    self._ready.clear()
                    await self._ensure_stream(subject)
                    await js.publish(subject, body, headers=hdrs)
        except ValueError:
            raise
        except Exception as exc:
            self.stats.publish_errors += 1
            raise self._error(exc, f"publish to {subject!r}") from exc
        self.stats.published += 1

    async def request(self, subject: str, headers: Mapping[str, str], body: bytes, *,
                      timeout_s: float) -> Reply:
        """Send a request (core NATS) and await the first reply.

        Raises:
            RequestTimeout: no reply within ``timeout_s`` seconds.
            TransportError: nobody subscribes to ``subject`` (no responders).
            BrokerUnavailable: the connection is closed.
        """
        nc, _ = self._client()
        try:
            msg = await nc.request(subject, body, timeout=timeout_s,
                                   headers=dict(headers) if headers else None)
        except nats.errors.NoRespondersError:
            raise TransportError(f"no responders on {subject!r}: nobody subscribes") from None
        except TimeoutError:
            raise RequestTimeout(subject, timeout_s) from None
        except Exception as exc:
            raise self._error(exc, f"request on {subject!r}") from exc
        return Reply(msg.headers or {}, msg.data)

    async def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until the server has seen everything written so far (a PING/PONG).

        Raises:
            TransportError: no PONG within ``timeout_s`` seconds. BrokerUnavailable: closed.
        """
        nc, _ = self._client()
        # nats-py (2.16) cancels the PONG future of a flush that times out but leaves it in its
        # queue; when that PONG arrives, set_result() raises InvalidStateError inside the
        # client's read loop, which then dies without reconnecting: a connection that looks
        # up and never reads again (found by the bandwidth-squeeze experiment: an 8 s squeeze
        # left the core deaf for the rest of the run). So a flush of ours never times out in
        # nats-py: it runs shielded with a long timeout of its own and the PONG completes it
        # later; only our wait gives up after ``timeout_s``.
        task = asyncio.ensure_future(nc.flush(timeout=_FLUSH_BACKGROUND_S))  # type: ignore[arg-type]
        self._flushes.add(task)
        task.add_done_callback(self._flush_done)
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except Exception as exc:
            raise self._error(exc, "flush") from exc

    def _flush_done(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a late failure was already reported to the caller

    # -- streams ------------------------------------------------------------------------------

    def _stream_for(self, subject: str) -> tuple[str, str]:
        """``(stream name, stream subject)`` of a QoS >= 1 subject."""
        tokens = subject.split(".")
        if len(tokens) < 3 or any(t in ("", "*", ">") for t in tokens[:2]):
            raise ValueError(f"QoS >= 1 subject must look like <prefix>.<family>.<rest>, "
                             f"got {subject!r}")
        stream = _BAD_STREAM_CHARS.sub("_", f"{self.stream_prefix}_{tokens[1]}".upper())
        if stream == self.dlq_stream:
            raise ValueError(f"family {tokens[1]!r} collides with the dead-letter stream")
        return stream, f"{tokens[0]}.{tokens[1]}.>"

    async def _ensure_stream(self, subject: str) -> str:
        stream = self._ready.get(subject)
        if stream is None:
            stream, stream_subject = self._stream_for(subject)
            if stream not in self._streams:
                await self._add_stream(stream, stream_subject)
            if len(self._ready) >= 10_000:
                self._ready.clear()
            self._ready[subject] = stream
        return stream

    async def _add_stream(self, stream: str, stream_subject: str) -> None:
        """Create ``stream`` if missing (idempotent; an existing stream that covers
        ``stream_subject`` with another configuration is used as it is, with a warning)."""
        _, js = self._client()
        async with self._stream_lock:
            if stream in self._streams:
                return
            try:
                await js.add_stream(name=stream, subjects=[stream_subject],
                                    storage=api.StorageType.FILE,
                                    duplicate_window=self.duplicate_window_s)
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _STREAM_CONFLICT:
                    raise TransportError(f"cannot create stream {stream}: {exc}") from exc
                info = await js.stream_info(stream)
                if stream_subject not in (info.config.subjects or []):
                    raise TransportError(f"stream {stream} exists without subject "
                                         f"{stream_subject!r}: {info.config.subjects}") from exc
                _log.warning("stream %s exists with another configuration; using it", stream)
            self._streams.add(stream)

    # -- subscribe ----------------------------------------------------------------------------

    async def subscribe(self, subject: str, handler: DeliveryHandler, *,
                        qos: QoS = QoS.AT_MOST_ONCE, group: str | None = None,
                        max_in_flight: int = 256) -> Subscription:
        """Deliver messages on ``subject`` to ``handler``, at most ``max_in_flight`` at once.

        QoS 0: a core subscription (queue group ``group``). QoS 1/2: a durable pull consumer
        named after ``group`` and ``subject`` (``<group>-<subject>`` sanitised, or the subject
        alone without a group) shared by all members, fetched by a background loop. A handler
        that raises without settling its delivery gets it nacked (QoS >= 1).

        Raises:
            ValueError: ``max_in_flight`` < 1, or a bad QoS >= 1 subject.
            TransportError / BrokerUnavailable: the broker refused or is gone.
        """
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight!r}")
        nc, js = self._client()
        sub: CoreSubscription | JetStreamSubscription
        try:
            if qos == QoS.AT_MOST_ONCE:
                sub = CoreSubscription(self, handler, max_in_flight)
                sub.sub = await nc.subscribe(subject, queue=group or "", cb=sub.on_msg,
                                             pending_msgs_limit=_SUB_PENDING_MSGS,
                                             pending_bytes_limit=_SUB_PENDING_BYTES)
            else:
                sub = await self._subscribe_js(js, subject, handler, group, max_in_flight)
        except (ValueError, TransportError):
            raise
        except Exception as exc:
            raise self._error(exc, f"subscribe to {subject!r}") from exc
        self._subs.add(sub)
        return sub

    async def _subscribe_js(self, js: JetStreamContext, subject: str, handler: DeliveryHandler,
                            group: str | None, max_in_flight: int) -> JetStreamSubscription:
        stream = await self._ensure_stream(subject)
        durable = _name(f"{group}-{subject}" if group else subject)
        config = api.ConsumerConfig(
            durable_name=durable, filter_subject=subject, ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL, ack_wait=self.ack_wait_s,
            max_deliver=self.max_deliver, max_ack_pending=max(4 * max_in_flight, 1024))
        try:
            info = await js.consumer_info(stream, durable)
        except nats.js.errors.NotFoundError:
            try:
                info = await js.add_consumer(stream, config)
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _CONSUMER_EXISTS:
                    raise TransportError(f"cannot create consumer {durable}: {exc}") from exc
                info = await js.consumer_info(stream, durable)
        if info.config.filter_subject != subject:
            raise TransportError(f"consumer {stream}/{durable} filters "
                                 f"{info.config.filter_subject!r}, not {subject!r}")
        max_deliver = info.config.max_deliver or self.max_deliver
        if max_deliver < 1:  # -1: unlimited
            max_deliver = 1 << 30
        if (info.config.ack_wait, info.config.max_deliver) != (self.ack_wait_s, self.max_deliver):
            _log.warning("consumer %s/%s exists with ack_wait=%s max_deliver=%s; using them",
                         stream, durable, info.config.ack_wait, info.config.max_deliver)
        psub = await js.pull_subscribe_bind(durable=durable, stream=stream,
                                            pending_msgs_limit=_SUB_PENDING_MSGS,
                                            pending_bytes_limit=_SUB_PENDING_BYTES)
        sub = JetStreamSubscription(self, handler, max_in_flight, psub, stream, durable,
                                     max_deliver)
        nc, _ = self._client()
        sub.advisory = await nc.subscribe(f"{_ADVISORY_MAX_DELIVERIES}.{stream}.{durable}",
                                          queue=_name(f"catga-dlq-{stream}-{durable}"),
                                          cb=sub.on_max_deliveries)
        sub.start()
        return sub

    # -- dead letters -------------------------------------------------------------------------

    async def dead_letter(self, subject: str, headers: Mapping[str, str], body: bytes,
                          deliveries: int, reason: str) -> None:
        """Store a message in the dead-letter stream (``<dlq_prefix>.<subject>``).

        Its ``Nats-Msg-Id`` (if any) is kept, so one message id is dead-lettered at most once
        within ``duplicate_window_s``.

        Raises:
            TransportError / BrokerUnavailable: not stored (the caller must not drop it then).
        """
        _, js = self._client()
        hdrs = dict(headers)
        hdrs[H_DLQ_REASON] = _header_value(reason) or "unspecified"
        hdrs[H_DLQ_SUBJECT] = subject
        hdrs[H_DLQ_DELIVERIES] = str(deliveries)
        try:
            if self.dlq_stream not in self._streams:
                await self._add_stream(self.dlq_stream, f"{self.dlq_prefix}.>")
            await js.publish(f"{self.dlq_prefix}.{subject}", body, headers=hdrs)
        except Exception as exc:
            raise self._error(exc, f"dead-letter {subject!r}") from exc
        self.stats.dead_lettered += 1
        _log.warning("dead-lettered a message from %s after %d deliveries: %s",
                     subject, deliveries, hdrs[H_DLQ_REASON])

    async def dead_letters(self, limit: int = 100, subject: str | None = None) -> list[DeadLetter]:
        """Read up to ``limit`` dead letters, oldest first (for tests and reports).

        Args:
            subject: only those first published to this subject (wildcards allowed).

        Raises:
            TransportError / BrokerUnavailable: the dead-letter stream cannot be read.
        """
        _, js = self._client()
        filter_subject = f"{self.dlq_prefix}.{subject or '>'}"
        out: list[DeadLetter] = []
        seq = 1
        try:
            while len(out) < limit:
                try:
                    raw = await js.get_msg(self.dlq_stream, seq=seq, subject=filter_subject,
                                           next=True)
                except nats.js.errors.NotFoundError:
                    break
                out.append(DeadLetter(raw.headers or {}, raw.data or b""))
                seq = (raw.seq or seq) + 1
        except Exception as exc:
            raise self._error(exc, "read dead letters") from exc
        return out

    # -- shutdown -----------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop every subscription (running handlers are cancelled; their QoS >= 1 deliveries
        come back after ``ack_wait_s``), flush and disconnect. Idempotent; never raises."""
        self._closing = True
        for sub in list(self._subs):
            await sub.stop()
        nc, self._nc, self._js = self._nc, None, None
        self._streams.clear()
        self._ready.clear()
        if nc is None or nc.is_closed:
            return
        with contextlib.suppress(Exception):
            if nc.is_connected:
                await nc.flush(timeout=1)
        with contextlib.suppress(Exception):
            await nc.close()
        for task in list(self._flushes):
            task.cancel()
        _log.info("closed connection to %s", self.url)
