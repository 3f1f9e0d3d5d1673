"""What the loader returns: a system under test as its AsyncAPI 3 document describes it, and
the rules that pick its input and output operations (``x-catga-bench`` or the defaults)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from catga_bench.errors import ConfigError
from catga_bench.workload.asyncapi._problems import _Problem, _show


class Correlation(BaseModel):
    """Where a message carries its correlation id."""

    model_config = ConfigDict(frozen=True)

    where: Literal["header", "payload"]
    #: the header name, or an RFC 6901 JSON pointer into the payload (never "")
    path: str


class SpecMessage(BaseModel):
    """One Message Object."""

    #: the key the message sits under (components.messages or a channel's messages), or its name
    name: str
    #: the payload's JSON Schema, refs inlined, or None when the message declares no payload
    payload_schema: dict[str, Any] | None
    correlation: Correlation | None
    #: JSON pointer of the Message Object in the document ("/components/messages/OrderPlaced")
    pointer: str


#: the HTTP methods of an operation's ``bindings.http.method`` that are read
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class SpecChannel(BaseModel):
    id: str
    #: the subject / stream key / path
    address: str
    messages: list[SpecMessage]
    #: the names of the servers the channel's ``servers`` list refers to (``[]``: not given,
    #: i.e. every server)
    servers: list[str] = []


class SpecOperation(BaseModel):
    id: str
    #: the service's action: receive = it consumes (our input), send = it emits (our outputs)
    action: Literal["send", "receive"]
    channel: SpecChannel
    #: the operation's own ``messages`` if given, else the channel's
    messages: list[SpecMessage]
    #: the standard operation binding ``bindings.http.method`` (None: not given; the HTTP
    #: kind then sends POST)
    http_method: HttpMethod | None = None


class SpecServer(BaseModel):
    name: str
    protocol: Literal["nats", "redis", "http", "https"]
    #: "127.0.0.1:4222"
    host: str
    #: "" or "/base"
    pathname: str = ""

    def url(self) -> str:
        """``protocol://host`` plus the pathname: ``nats://127.0.0.1:4222``."""
        return f"{self.protocol}://{self.host}{self.pathname}"


class JetStreamExt(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    #: name of the service's JetStream stream holding the input subject
    stream: str | None = None
    #: the service's durable consumer name (informational for now)
    durable: str | None = None
    #: empty the stream before the run (messages left from an earlier run are not redelivered
    #: into this one)
    purge: bool = False


class RedisExt(BaseModel):
    """``x-catga-bench.redis``: the service's Redis Streams side (``--sut asyncapi`` over a
    ``redis`` server; docs/sut.md, "Redis Streams").

    Attributes:
        group: the service's consumer group on the input stream (``XREADGROUP GROUP NAME``);
            with ``purge``, its pending entries are acknowledged too. None: not given.
        purge: trim the input stream to nothing before the run (``XTRIM key MAXLEN 0``), so
            entries left from an earlier run are not consumed in this one.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    group: str | None = None
    purge: bool = False


class ReadyCheck(BaseModel):
    """How the harness knows a service it started is ready: exactly one field is set."""

    model_config = ConfigDict(frozen=True)

    #: a regular expression searched in each stdout/stderr line (``re.search``)
    log: str | None = None
    #: a URL whose GET answers 2xx (``http://127.0.0.1:8085/health``)
    http: str | None = None
    #: ``host:port`` accepting a TCP connection (``127.0.0.1:8085``)
    tcp: str | None = None

    def describe(self) -> str:
        """``log "order-service ready"``, ``http http://...`` or ``tcp host:port``."""
        if self.log is not None:
            return f"log line matching {self.log!r}"
        if self.http is not None:
            return f"GET {self.http} answering 2xx"
        return f"TCP connect to {self.tcp}"


class ProcessExt(BaseModel):
    """``x-catga-bench.process``: how the harness starts the service itself (docs/sut.md,
    "Starting the service"). Absent: the service is assumed running."""

    model_config = ConfigDict(frozen=True)

    #: argv (a string in the document is split with ``shlex``), never empty
    command: list[str]
    #: absolute working directory (the document's ``cwd`` resolved against the document's
    #: folder; default: that folder)
    cwd: Path
    #: set over ``os.environ``; values may hold ``{nats_url}``, ``{redis_url}``, ``{http_url}``
    env: dict[str, str] = {}
    ready: ReadyCheck
    #: seconds from start to ready before the run is abandoned (exit 3)
    start_timeout_s: float = 20.0
    #: seconds between SIGTERM and SIGKILL when stopping
    stop_grace_s: float = 5.0


class HttpExt(BaseModel):
    """``x-catga-bench.http``: how the HTTP kind sends each input (``--sut http``).

    Attributes:
        headers: extra request headers (name: value), sent with every request.
        timeout_s: seconds a request may take, connect to last byte (> 0); over it the
            message completes as a failure (``http_timeout``), not a loss.
        ok_status: the statuses that complete a message as a success (or, with outputs,
            that mean accepted); None: any 2xx.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    headers: dict[str, str] = {}
    timeout_s: float = 10.0
    ok_status: list[int] | None = None

    def is_ok(self, status: int) -> bool:
        """True when ``status`` completes a message as a success (or accepts it)."""
        return status in self.ok_status if self.ok_status is not None else 200 <= status < 300


class BenchExtension(BaseModel):
    """The document's top-level ``x-catga-bench`` object (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    input: str | None = None
    outputs: list[str] | None = None
    payload: dict[str, Any] = {}
    qos: int | None = None
    jetstream: JetStreamExt | None = None
    #: how to start the service (read by ``_process.read_process``, not by pydantic)
    process: ProcessExt | None = None
    http: HttpExt | None = None
    redis: RedisExt | None = None


#: the brokers ``--sut asyncapi`` drives a service over
BrokerProtocol = Literal["nats", "redis"]


class SutSpec(BaseModel):
    """A system under test as read from its AsyncAPI 3 document."""

    path: Path
    title: str
    version: str
    servers: dict[str, SpecServer]
    channels: dict[str, SpecChannel]
    operations: dict[str, SpecOperation]
    bench: BenchExtension

    def input_operation(self) -> SpecOperation:
        """``x-catga-bench.input``, or the only ``receive`` operation."""
        try:
            return self.operations[_input_id(self.operations, self.bench)]
        except _Problem as p:
            raise ConfigError(p.line(self.path)) from None

    def output_operations(self, *, required: bool = True) -> list[SpecOperation]:
        """``x-catga-bench.outputs`` (in the order listed), or every ``send`` operation in
        document order. ``required=False`` (the HTTP kind, whose response may complete a
        message): none is allowed (``[]``: no send operation, or ``outputs: []``).

        Raises:
            ConfigError: no output operation although ``required``, or a bad name.
        """
        try:
            return [self.operations[i]
                    for i in _output_ids(self.operations, self.bench, required)]
        except _Problem as p:
            raise ConfigError(p.line(self.path)) from None

    def input_broker(self) -> BrokerProtocol:
        """The broker ``--sut asyncapi`` drives the service over (docs/sut.md, "Redis
        Streams"): the protocol of the first ``nats`` or ``redis`` server the input channel's
        ``servers`` names; when it names none, ``nats`` if the document has a nats server,
        else ``redis`` if it has a redis server, else ``nats`` (the URL then comes from
        ``--nats-url``).

        Raises:
            ConfigError: no input operation can be chosen (see :meth:`input_operation`).
        """
        named = [self.servers[n] for n in self.input_operation().channel.servers
                 if n in self.servers]
        for server in named:
            if server.protocol in ("nats", "redis"):
                return server.protocol  # type: ignore[return-value]
        if self.server("nats") is None and self.server("redis") is not None:
            return "redis"
        return "nats"

    def broker_server(self) -> SpecServer | None:
        """The server of :meth:`input_broker`'s protocol: the first such one the input
        channel names, else the document's first; None when the document has none."""
        protocol = self.input_broker()
        for name in self.input_operation().channel.servers:
            server = self.servers.get(name)
            if server is not None and server.protocol == protocol:
                return server
        return self.server(protocol)

    def server(self, protocol: str) -> SpecServer | None:
        """The first server speaking ``protocol`` (``https`` counts as ``http``), or None."""
        family = _family(protocol.lower())
        return next((s for s in self.servers.values() if _family(s.protocol) == family), None)


def _family(protocol: str) -> str:
    return "http" if protocol == "https" else protocol


def _named(ops: dict[str, SpecOperation], name: str, where: str) -> SpecOperation:
    if name not in ops:
        raise _Problem(where, f"no operation {_show(name)}; operations: "
                              f"{', '.join(sorted(ops)) or '(none)'}")
    return ops[name]


def _input_id(ops: dict[str, SpecOperation], bench: BenchExtension) -> str:
    """The input operation's id: ``bench.input`` or the only receive operation."""
    if bench.input is not None:
        op = _named(ops, bench.input, "/x-catga-bench/input")
        if op.action != "receive":
            raise _Problem("/x-catga-bench/input", f"operation {_show(op.id)} has action "
                           f"{op.action}; the input must be a receive operation (the service "
                           "consumes it)")
        return op.id
    receive = [o.id for o in ops.values() if o.action == "receive"]
    if not receive:
        raise _Problem("/operations", "no receive operation: the input is an operation with "
                                      "action: receive (the service consumes it)")
    if len(receive) > 1:
        raise _Problem("/operations", f"more than one receive operation ({', '.join(receive)}): "
                                      "name the input with x-catga-bench.input")
    return receive[0]


def _output_ids(ops: dict[str, SpecOperation], bench: BenchExtension,
                required: bool = True) -> list[str]:
    """The output operations' ids: ``bench.outputs`` or every send operation (none allowed
    when not ``required``)."""
    if bench.outputs is None:
        send = [o.id for o in ops.values() if o.action == "send"]
        if not send and required:
            raise _Problem("/operations", "no output operation: no operation has action: send "
                                          "(the service emits its outputs there)")
        return send
    if not bench.outputs and required:
        raise _Problem("/x-catga-bench/outputs", "no output operation (the list is empty); name "
                       "send operations, or leave outputs out for all of them")
    for i, name in enumerate(bench.outputs):
        where = f"/x-catga-bench/outputs/{i}"
        op = _named(ops, name, where)
        if op.action != "send":
            raise _Problem(where, f"operation {_show(name)} has action {op.action}; an output "
                                  "must be a send operation (the service emits it)")
        if name in bench.outputs[:i]:
            raise _Problem(where, f"operation {_show(name)} is listed twice")
    return list(bench.outputs)
