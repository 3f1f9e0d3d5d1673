"""A black-box system under test over HTTP (``--sut http``): each input is one HTTP request
described by the service's AsyncAPI 3 document (docs/sut.md, "HTTP").

Open model: :meth:`HttpTarget.offer` starts the request as a task and returns at once; the
generator never waits for a response before sending the next message (no closed loop), and
latency runs from the message's *intended* send time to its outcome (the generator measures
it when the sink is told).

The request (:func:`catga_bench.workload.http.http_input`): the document's ``http`` server and
the input channel's address as the URL (Locust's ``--host`` overrides scheme://host:port), the
input operation's ``bindings.http.method`` (default POST), the ``x-catga-bench.payload``
template rendered as a JSON body, the ``x-catga-bench.http`` headers, and a fresh correlation
id ``<run>.<stream>.<seq>`` stamped at the input message's ``correlationId.location`` (a
header, or a JSON pointer in the body).

Two shapes:

* **no output operation**: the response completes the message. A status in ``ok_status``
  (default: any 2xx) is a success (the ledger's one column, ``response``, handled it); any
  other status is a known failure counted in the report's ``errors`` as ``http_<status>``
  (``http_503``); a request over ``timeout_s`` is ``http_timeout``, a connection refused or
  reset ``http_connect``, any other client error ``http_error``. None of these is a loss.
* **output operations** (``POST /orders/async`` answers 202, then the service emits
  ``OrderConfirmed`` on NATS carrying the id): an ok status means *accepted*; the outputs are
  read and counted exactly as for ``--sut asyncapi``
  (:class:`~catga_bench.targets.blackbox.OutputReader`: duplicate, late, unexpected,
  nonconformant); a failed request completes its message as a failure as above.

The client is :class:`~catga_bench.targets._h1.H1Pool`: up to ``connections`` keep-alive
HTTP/1.1 connections, one request in flight on each, callbacks instead of a task per request,
responses parsed by httptools; the request line and the static headers are encoded once.
aiohttp's tuned ``ClientSession`` collapsed above 5,000 requests/s per process on the
reference machine; this pool holds 18,000/s (the figures: ``_h1``'s docstring, docs/sut.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import Counter
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import orjson

from catga_bench.targets._h1 import H1Pool
from catga_bench.targets.base import (
    LabelledError,
    OutcomeSink,
    SystemFigures,
    TargetUnavailable,
)
from catga_bench.targets.base import wait_for_outcomes as _wait
from catga_bench.targets.blackbox import (
    LATE_GRACE_S,
    BlackBoxTarget,
    connect_nats,
)
from catga_bench.workload.asyncapi import SutSpec
from catga_bench.workload.http import http_input
from catga_bench.workload.plan import RunPlan
from core import ErrorCode, Result

log = logging.getLogger("catga.bench")

#: keep-alive connections the target may hold open to the service (one per request in flight)
CONNECTIONS = 1000
#: how long open() waits for a TCP connection to the service before exit 3
CONNECT_CHECK_S = 3.0
_OK: Result[Any] = Result.success(None)


class HttpTarget(BlackBoxTarget):
    """The service ``spec`` describes, driven over HTTP (see the module docstring).

    Args:
        spec: the loaded AsyncAPI document (it has an http server; checked by the run plan).
        host: Locust's ``--host`` (``http[s]://HOST[:PORT][/base]``), or None for the
            document's server.
        nats_url: the NATS server the outputs are read on (``--nats-url``); default: the
            document's ``nats`` server. Unused without output operations.
        connections: the connector's limit of open connections.
        late_grace_s: with outputs: how long they are still read after the drain deadline
            (counted late).

    Raises:
        ConfigError: from the constructor: no http server, or a bad ``host``.
        TargetUnavailable: from :meth:`open`: the service's address, or the NATS server of its
            outputs, cannot be reached.
    """

    name = "http"

    def __init__(self, spec: SutSpec, host: str | None = None, *,
                 nats_url: str | None = None, connections: int = CONNECTIONS,
                 late_grace_s: float = LATE_GRACE_S, run: str | None = None) -> None:
        self._bind_spec(spec, run, outputs_required=False)
        self.request = http_input(spec, host)
        self.url = self.request.url
        self.method = self.request.method
        self.connections = connections
        self.late_grace_s = late_grace_s
        server = spec.server("nats")
        self.nats_url = nats_url or (server.url() if server is not None else None)
        parts = urlsplit(self.url)
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.tls else 80)
        self._head = self._encode_head(parts.netloc, parts.path or "/")
        self.statuses: Counter[int] = Counter()
        self.failures: Counter[str] = Counter()  # http_timeout, http_connect, http_error
        self._sink: OutcomeSink | None = None
        self._pool: H1Pool | None = None
        self._nc: Any = None
        self._ok = self.request.options.is_ok
        self._completes = not self.outputs.columns  # the response completes the message

    def _encode_head(self, netloc: str, path: str) -> bytes:
        """The request line and the headers every request carries (``Host``, the document's
        ``x-catga-bench.http.headers``, checked by :func:`http_input`, and
        ``Content-Type: application/json`` for a body unless given), encoded once."""
        headers = dict(self.request.options.headers)
        if self.request.body and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        lines = [f"{self.method} {path} HTTP/1.1", f"Host: {netloc}",
                 *(f"{name}: {value}" for name, value in headers.items())]
        return ("\r\n".join(lines) + "\r\n").encode("latin-1")

    # ----------------------------------------------------------------- opening
    async def open(self, plan: RunPlan, sink: OutcomeSink) -> None:
        self._sink = sink
        await self._check_reachable()
        if self.outputs.columns:
            if self.nats_url is None:
                raise TargetUnavailable(f"{self.spec.path}: the outputs are read on NATS but "
                                        "the document has no nats server; give one with "
                                        "--nats-url")
            self._nc = await connect_nats(self.nats_url, "the NATS server of the system under "
                                                         "test's outputs")
            await self.outputs.subscribe(self._nc, plan, sink)
        self._pool = H1Pool(self.host, self.port, limit=self.connections,
                            timeout_s=self.request.options.timeout_s,
                            ssl=ssl.create_default_context() if self.tls else None)

    async def _check_reachable(self) -> None:
        """A TCP connection to the service's address succeeds within CONNECT_CHECK_S (nothing
        is sent on it), else TargetUnavailable."""
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port),
                                               timeout=CONNECT_CHECK_S)
        except (OSError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise TargetUnavailable(f"the system under test at {self.url} cannot be reached: "
                                    f"{reason}; start it, or point --host at it") from None
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    # ----------------------------------------------------------------- sending
    def offer(self, stream: int, seq: int, copies: int = 1) -> None:
        payload, stamped = self.input_for(stream, seq)
        head = self._head
        for name, value in stamped.items():
            head += f"{name}: {value}\r\n".encode("latin-1")
        if self.request.body:
            body = orjson.dumps(payload)
            data = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        else:
            data = head + b"\r\n"
        pool = self._pool
        assert pool is not None
        for copy in range(copies):
            pool.submit(data, partial(self._done, stream, seq, copy == 0))

    def _done(self, stream: int, seq: int, record: bool, status: int,
              error: BaseException | None) -> None:
        """A response (``status``) or a failure (``error``) of one request; only the first
        copy's outcome (``record``) goes to the sink."""
        sink = self._sink
        if sink is None:
            return
        if error is not None:
            failure = self._failure(error)
            if record:
                sink.completed(stream, seq, Result(None, failure))  # failed in every column
            return
        self.statuses[status] += 1
        if not record:
            return
        if not self._ok(status):
            sink.completed(stream, seq, Result(None, LabelledError(
                ErrorCode.HANDLER_FAILED, f"HTTP {status} from {self.method} {self.url}",
                label=f"http_{status}")))
        elif self._completes:
            sink.handled(stream, 0, seq)
            sink.completed(stream, seq, _OK)
        else:
            sink.accepted(stream, seq)  # an output completes it

    def _failure(self, exc: BaseException) -> LabelledError:
        """The error of a request that got no response."""
        if isinstance(exc, TimeoutError):
            label, code = "http_timeout", ErrorCode.TIMEOUT
            text = f"no response within {self.request.options.timeout_s:g} s"
        elif isinstance(exc, OSError):
            label, code = "http_connect", ErrorCode.HANDLER_FAILED
            text = f"connection failed: {type(exc).__name__}: {exc}"
        else:
            label, code = "http_error", ErrorCode.HANDLER_FAILED
            text = f"{type(exc).__name__}: {exc}"
        self.failures[label] += 1
        return LabelledError(code, f"{self.method} {self.url}: {text}", label=label)

    # ----------------------------------------------------------------- closing
    async def close(self, drain_timeout_s: float) -> SystemFigures:
        """Wait (up to ``drain_timeout_s``) for the responses and outputs still due; with
        outputs, stop after 3 s with none arriving and read stragglers ``late_grace_s`` more
        (counted late); then close the connections (a request still unanswered has no
        outcome: its message counts as lost)."""
        sink = self._sink
        assert sink is not None
        deadline = time.perf_counter() + drain_timeout_s
        if self.outputs.columns:
            await _wait(sink, deadline, idle_limit_s=3.0)
            self.outputs.late = True
            await asyncio.sleep(self.late_grace_s)
            await self.outputs.unsubscribe()
        else:
            await _wait(sink, deadline)
        self._sink = None  # what is still unanswered has no outcome: counted lost
        if self._pool is not None:
            await self._pool.close()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        # integers, so that the figures of several processes add up (RunPayload.merge)
        transport: dict[str, Any] = {
            "name": "http", "method": self.method, "url": self.url,
            "requests": sum(self.statuses.values()) + sum(self.failures.values()),
            **{f"status_{k}": v for k, v in sorted(self.statuses.items())},
            "timeouts": self.failures["http_timeout"],
            "connect_errors": self.failures["http_connect"],
            "other_errors": self.failures["http_error"],
            "peak_connections": self._pool.peak if self._pool is not None else 0}
        if self.outputs.columns:
            transport["outputs_received"] = self.outputs.outputs_received
        return SystemFigures(transport=transport)


__all__ = ["CONNECTIONS", "HttpTarget"]
