"""Reading the document: YAML/JSON, local ``$ref`` resolution (refs to refs, refs inside payload
schemas, cycles), and the checks that turn each node into the model (catga_bench.workload.
asyncapi.model), every problem becoming one line that names the JSON pointer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for
from pydantic import ValidationError

from catga_bench.errors import ConfigError
from catga_bench.workload.asyncapi._problems import _join, _kind, _Problem, _show, pointer_tokens
from catga_bench.workload.asyncapi._process import read_process
from catga_bench.workload.asyncapi.model import (
    HTTP_METHODS,
    BenchExtension,
    Correlation,
    HttpExt,
    JetStreamExt,
    RedisExt,
    SpecChannel,
    SpecMessage,
    SpecOperation,
    SpecServer,
    SutSpec,
)

#: the server protocols read (``https`` counts as ``http`` for :meth:`SutSpec.server`)
PROTOCOLS = ("http", "https", "nats", "redis")
ACTIONS = ("receive", "send")
_LOCATION_FORMS = "$message.header#/NAME or $message.payload#/json/pointer"
_POINTER = re.compile(r"(/([^/~]|~[01])*)*")
_LOCATION = re.compile(r"\$message\.(header|payload)#(.*)", re.DOTALL)
_SCHEMA_FORMAT = re.compile(
    r"application/(vnd\.aai\.asyncapi|schema)(\+json|\+yaml)?(;.*)?", re.DOTALL)
#: JSON Schema keywords whose values are data, not schemas (a "$ref" there is not followed)
_DATA_KEYWORDS = frozenset({"const", "default", "enum", "example", "examples"})


def load_spec(path: Path | str) -> SutSpec:
    """Read the AsyncAPI 3 document at ``path`` (YAML or JSON).

    Raises:
        ConfigError: one line naming the file, the JSON pointer of the offending node and what
            is allowed.
    """
    path = Path(path)
    root = _read(path)
    try:
        return _Reader(root).spec(path)
    except _Problem as p:
        raise ConfigError(p.line(path)) from None


def parse_correlation_location(location: str, pointer: str) -> Correlation:
    """The :class:`Correlation` a ``correlationId.location`` runtime expression names;
    ``pointer`` is the JSON pointer of the location node, quoted in the error.

    Raises:
        ConfigError: ``location`` is not ``$message.header#/NAME`` or
            ``$message.payload#/json/pointer`` (a non-empty pointer).
    """
    try:
        return _location(location, pointer)
    except _Problem as p:
        raise ConfigError(p.line(None)) from None


def _read(path: Path) -> dict[str, Any]:
    """The document at ``path`` as a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; give the path of an AsyncAPI 3 document "
                          "(YAML or JSON)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}".replace("\n", " ")) from None
    try:
        root = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}: {where}not valid YAML or JSON: {problem}"
                          .replace("\n", " ")) from None
    if not isinstance(root, dict):
        raise ConfigError(f"{path}: the document is {_kind(root)}, not a mapping; an AsyncAPI "
                          "document is a mapping with asyncapi, info, channels, operations")
    return root


def _location(location: object, pointer: str) -> Correlation:
    """The :class:`Correlation` of a runtime expression (raises :class:`_Problem`)."""
    m = _LOCATION.fullmatch(location) if isinstance(location, str) else None
    if m is None or not _POINTER.fullmatch(m[2]):
        raise _Problem(pointer, f"{_show(location)} is not a runtime expression of the form "
                                f"{_LOCATION_FORMS}")
    if m[1] == "payload":
        if not m[2]:
            raise _Problem(pointer, f"{_show(location)} names the whole payload; name one field "
                                    "($message.payload#/json/pointer, e.g. #/order_id)")
        return Correlation(where="payload", path=m[2])
    parts = pointer_tokens(m[2])
    if len(parts) != 1 or not parts[0]:
        raise _Problem(pointer, f"{_show(location)}: a header location names one header "
                                "($message.header#/NAME)")
    return Correlation(where="header", path=parts[0])


#: what each x-catga-bench field allows (by "key" or "key/subkey"), for the one-line errors
_ALLOWED = {"input": "an operation id (string)", "outputs": "a list of operation ids",
            "payload": "a JSON object of field: template value", "qos": "0, 1 or 2",
            "jetstream": "a mapping with stream, durable, purge",
            "jetstream/purge": "true or false",
            "redis": "a mapping with group, purge",
            "redis/group": "the service's consumer group name (a non-empty string)",
            "redis/purge": "true or false"}


def _bench(node: object, path: Path) -> BenchExtension:
    """The ``x-catga-bench`` object of the document at ``path``."""
    where = "/x-catga-bench"
    if node is None:
        return BenchExtension()
    if not isinstance(node, dict):
        keys = ", ".join(BenchExtension.model_fields)
        raise _Problem(where, f"must be a mapping with keys {keys}; got {_kind(node)}")
    rest = {k: v for k, v in node.items() if k != "process"}  # read by _process.read_process
    try:
        bench = BenchExtension.model_validate(rest)
    except ValidationError as e:
        err = e.errors()[0]
    else:
        if "process" in node:
            bench.process = read_process(node["process"], path)
        return bench
    loc = [k for k in err["loc"] if k != "[key]"]
    at = _join(where, *loc)
    if err["type"] == "extra_forbidden":
        model = _SUB_MODELS.get(str(loc[0]), JetStreamExt) if len(loc) > 1 else BenchExtension
        raise _Problem(at, f"unknown key {_show(loc[-1])}; allowed keys: "
                           f"{', '.join(model.model_fields)}")
    table = {**_ALLOWED, **_HTTP_ALLOWED}
    allowed = table.get("/".join(map(str, loc[:2]))) or table.get(str(loc[0]), "a string")
    raise _Problem(at, f"{err['msg']} (got {_show(err['input'])}); allowed: {allowed}")


#: the nested objects of x-catga-bench, for "unknown key" errors
_SUB_MODELS: dict[str, type[JetStreamExt] | type[HttpExt] | type[RedisExt]] = {
    "jetstream": JetStreamExt, "http": HttpExt, "redis": RedisExt}
_HTTP_ALLOWED = {"http": "a mapping with headers, timeout_s, ok_status",
                 "http/headers": "a mapping of header name: string value",
                 "http/timeout_s": "a number of seconds > 0",
                 "http/ok_status": "a list of HTTP statuses (integers 100..599)"}


def _check_http(bench: BenchExtension) -> None:
    """``x-catga-bench.http``: a timeout > 0 and statuses in 100..599."""
    http = bench.http
    if http is None:
        return
    if not http.timeout_s > 0:
        raise _Problem("/x-catga-bench/http/timeout_s", f"{http.timeout_s} is not a timeout; "
                       "allowed: a number of seconds > 0")
    for i, status in enumerate(http.ok_status or []):
        if not 100 <= status <= 599:
            raise _Problem(f"/x-catga-bench/http/ok_status/{i}", f"{status} is not an HTTP "
                           "status; allowed: integers 100..599")
    if http.ok_status is not None and not http.ok_status:
        raise _Problem("/x-catga-bench/http/ok_status", "empty: no response could succeed; "
                       "list statuses, or leave ok_status out for any 2xx")


def _check_redis(bench: BenchExtension) -> None:
    """``x-catga-bench.redis.group``: a non-empty name when given."""
    if bench.redis is not None and bench.redis.group is not None and not bench.redis.group:
        raise _Problem("/x-catga-bench/redis/group", "empty; allowed: "
                       f"{_ALLOWED['redis/group']}, or leave group out")


def _check_qos(bench: BenchExtension) -> None:
    if bench.qos is not None and bench.qos not in (0, 1, 2):
        raise _Problem("/x-catga-bench/qos", f"{bench.qos} is not a QoS; allowed: 0, 1 or 2")


def _check_correlations(spec: SutSpec) -> None:
    """The input operation carries one message; it and every output message declare a
    correlationId."""
    inp = spec.input_operation()
    if len(inp.messages) != 1:
        names = ", ".join(m.name for m in inp.messages) or "none"
        raise _Problem(_join("/operations", inp.id), f"the input operation carries "
                       f"{len(inp.messages)} messages ({names}); it must carry exactly one "
                       "(list it in the operation's messages)")
    # a document with an http server may have no output: the HTTP response completes a message
    outputs = spec.output_operations(required=spec.server("http") is None)
    for op in outputs:
        if not op.messages:
            raise _Problem(_join("/operations", op.id), "the output operation carries no "
                           f"message (channel {_show(op.channel.id)} declares none)")
    for op in [inp, *outputs]:
        for m in op.messages:
            if m.correlation is None:
                raise _Problem(m.pointer, f"message {_show(m.name)} has no correlationId; the "
                               "input message and every output message must declare one (the "
                               "harness stamps the id at the input's location and reads it "
                               "back at each output's)")


class _Doc:
    """The document, with local ``$ref`` resolution."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def at(self, pointer: str) -> Any:
        """The node at ``pointer``; raises LookupError when there is none."""
        node: Any = self.root
        for part in pointer_tokens(pointer):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise LookupError(pointer)
        return node

    def target(self, ref: object, where: str) -> str:
        """The document pointer a ``$ref`` value at ``where`` names."""
        if not isinstance(ref, str):
            raise _Problem(where, f"$ref must be a string (\"#/...\"); got {_show(ref)}")
        if not ref.startswith("#"):
            raise _Problem(where, f"external $ref {_show(ref)} is not read; catga-bench follows "
                                  "only refs inside the document (\"#/...\")")
        pointer = unquote(ref[1:])
        if not _POINTER.fullmatch(pointer):
            raise _Problem(where, f"$ref {_show(ref)} is not a JSON pointer (\"#/a/b\")")
        return pointer

    def follow(self, ref: object, where: str, seen: list[str]) -> tuple[Any, str]:
        """The node a ``$ref`` at ``where`` names, and its pointer; ``seen`` is the chain of
        pointers followed so far (a cycle is an error)."""
        pointer = self.target(ref, where)
        if pointer in seen:
            chain = " -> ".join(f"#{p}" for p in [*seen[seen.index(pointer):], pointer])
            raise _Problem(where, f"$ref cycle: {chain}")
        try:
            return self.at(pointer), pointer
        except LookupError:
            raise _Problem(where, f"$ref {_show(ref)} points to nothing") from None

    def deref(self, node: Any, where: str) -> tuple[Any, str]:
        """``node`` with Reference Objects followed (refs to refs too), and its pointer."""
        seen = [where]
        while isinstance(node, dict) and "$ref" in node:
            node, where = self.follow(node["$ref"], where, seen)
            seen.append(where)
        return node, where

    def inline(self, node: Any, where: str, stack: tuple[str, ...]) -> Any:
        """A JSON Schema with every ``$ref`` replaced by what it names (recursively)."""
        if isinstance(node, dict) and isinstance(node.get("$ref"), str):
            target, pointer = self.follow(node["$ref"], where, list(stack))
            return self.inline(target, pointer, (*stack, pointer))
        if isinstance(node, dict):
            return {k: v if k in _DATA_KEYWORDS else self.inline(v, _join(where, k), stack)
                    for k, v in node.items()}
        if isinstance(node, list):
            return [self.inline(v, _join(where, i), stack) for i, v in enumerate(node)]
        return node

    def mapping(self, node: Any, where: str, what: str) -> dict[str, Any]:
        """``node`` (refs followed) when it is a mapping, else an error."""
        node, where = self.deref(node, where)
        if not isinstance(node, dict):
            raise _Problem(where, f"must be {what} (a mapping); got {_kind(node)}")
        return node

    def section(self, node: dict[str, Any], where: str, key: str, what: str) -> dict[str, Any]:
        """The map under ``key`` of ``node`` ({} when absent)."""
        value = node.get(key)
        return {} if value is None else self.mapping(value, _join(where, key), what)


class _Reader:
    """Builds a :class:`SutSpec` from the document, one section at a time."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.doc = _Doc(root)
        self.messages: dict[str, SpecMessage] = {}  # by pointer, so each is built once

    def spec(self, path: Path) -> SutSpec:
        root = self.doc.root
        _check_version(root.get("asyncapi"))
        title, version = self._info()
        servers = {str(k): self._server(str(k), v)
                   for k, v in self.doc.section(root, "", "servers", "a map of servers").items()}
        channels = {str(k): self._channel(str(k), v, servers)
                    for k, v in self.doc.section(root, "", "channels", "a map of channels").items()}
        ops = self.doc.section(root, "", "operations", "a map of operations")
        operations = {str(k): self._operation(str(k), v, channels) for k, v in ops.items()}
        bench = _bench(root.get("x-catga-bench"), path)
        _check_qos(bench)
        _check_http(bench)
        _check_redis(bench)
        spec = SutSpec(path=path, title=title, version=version, servers=servers,
                       channels=channels, operations=operations, bench=bench)
        _check_correlations(spec)
        return spec

    def _info(self) -> tuple[str, str]:
        info = self.doc.mapping(self.doc.root.get("info"), "/info", "the info object with title "
                                "and version")
        for key in ("title", "version"):
            value = info.get(key)
            if not isinstance(value, str) or not value:
                hint = f' (quote it: "{value}")' if isinstance(value, int | float) else ""
                raise _Problem(f"/info/{key}", f"must be a non-empty string; got "
                                               f"{_show(value)}{hint}")
        return info["title"], info["version"]

    def _server(self, name: str, node: Any) -> SpecServer:
        where = _join("/servers", name)
        node, where = self.doc.deref(node, where)
        server = self.doc.mapping(node, where, "a server")
        protocol = server.get("protocol")
        if not isinstance(protocol, str) or protocol.lower() not in PROTOCOLS:
            raise _Problem(f"{where}/protocol", f"{_show(protocol)} is not read; allowed: "
                                                f"{', '.join(PROTOCOLS)}")
        host = server.get("host")
        if not isinstance(host, str) or not host or "://" in host or "{" in host:
            raise _Problem(f"{where}/host", f"{_show(host)}: allowed: host[:port] with no "
                                            "scheme and no {variables}, e.g. \"127.0.0.1:4222\"")
        pathname = server.get("pathname") or ""
        if not isinstance(pathname, str) or (pathname and not pathname.startswith("/")) \
                or "{" in pathname:
            raise _Problem(f"{where}/pathname", f"{_show(pathname)}: allowed: a path starting "
                                                "with / and no {variables}, e.g. \"/base\"")
        return SpecServer(name=name, protocol=protocol.lower(), host=host, pathname=pathname)

    def _channel(self, cid: str, node: Any, servers: dict[str, SpecServer]) -> SpecChannel:
        node, where = self.doc.deref(node, _join("/channels", cid))
        channel = self.doc.mapping(node, where, "a channel")
        address = channel.get("address")
        if not isinstance(address, str) or not address:
            got = "missing" if address is None else f"{_show(address)} is not a non-empty string"
            raise _Problem(f"{where}/address", f"{got}; catga-bench needs the channel's address "
                           "(the subject, stream key or path)")
        if "{" in address:
            raise _Problem(f"{where}/address", f"{_show(address)} has parameters; catga-bench "
                           "reads only fixed addresses (no {parameters})")
        messages = self.doc.section(channel, where, "messages", "a map of messages")
        return SpecChannel(id=cid, address=address, messages=[
            self._message(v, _join(where, "messages", k)) for k, v in messages.items()],
            servers=self._channel_servers(channel.get("servers"), f"{where}/servers", servers))

    def _channel_servers(self, refs: Any, where: str,
                         servers: dict[str, SpecServer]) -> list[str]:
        """The server names a channel's ``servers`` list refers to (``[]`` when absent)."""
        if refs is None:
            return []
        if not isinstance(refs, list):
            raise _Problem(where, f"must be a list of $refs to servers under #/servers; got "
                                  f"{_kind(refs)}")
        names = []
        for i, ref in enumerate(refs):
            at = _join(where, i)
            if not isinstance(ref, dict) or "$ref" not in ref:
                raise _Problem(at, "must be a $ref to a server under #/servers "
                                   "({\"$ref\": \"#/servers/NAME\"})")
            parts = pointer_tokens(self.doc.target(ref["$ref"], at))
            if len(parts) != 2 or parts[0] != "servers" or parts[1] not in servers:
                known = ", ".join(sorted(servers)) or "(none)"
                raise _Problem(at, f"$ref {_show(ref['$ref'])} must point to a server under "
                                   f"#/servers (\"#/servers/NAME\"); servers: {known}")
            names.append(parts[1])
        return names

    def _operation(self, oid: str, node: Any, channels: dict[str, SpecChannel]) -> SpecOperation:
        node, where = self.doc.deref(node, _join("/operations", oid))
        op = self.doc.mapping(node, where, "an operation")
        action = op.get("action")
        if action not in ACTIONS:
            raise _Problem(f"{where}/action", f"{_show(action)} is not an action; allowed: "
                           f"{', '.join(ACTIONS)} (AsyncAPI 3)")
        channel = self._op_channel(op.get("channel"), f"{where}/channel", channels)
        messages = channel.messages
        if op.get("messages") is not None:
            messages = self._op_messages(op["messages"], f"{where}/messages", channel)
        return SpecOperation(id=oid, action=action, channel=channel, messages=messages,
                             http_method=self._http_method(op, where))

    def _http_method(self, op: dict[str, Any], where: str) -> Any:
        """The operation's ``bindings.http.method`` (the standard HTTP operation binding), or
        None when not given; other bindings and binding fields are ignored."""
        if op.get("bindings") is None:
            return None
        bindings = self.doc.mapping(op["bindings"], f"{where}/bindings", "a map of bindings")
        if bindings.get("http") is None:
            return None
        http = self.doc.mapping(bindings["http"], f"{where}/bindings/http", "an HTTP binding")
        method = http.get("method")
        if method is None:
            return None
        if method not in HTTP_METHODS:
            raise _Problem(f"{where}/bindings/http/method", f"{_show(method)} is not read; "
                           f"allowed: {', '.join(HTTP_METHODS)}")
        return method

    def _op_channel(self, ref: Any, where: str, channels: dict[str, SpecChannel]) -> SpecChannel:
        if not isinstance(ref, dict) or "$ref" not in ref:
            raise _Problem(where, "must be a $ref to a channel under #/channels "
                                  "({\"$ref\": \"#/channels/ID\"})")
        pointer = self.doc.target(ref["$ref"], where)
        parts = pointer_tokens(pointer)
        if len(parts) == 2 and parts[0] == "channels" and parts[1] in channels:
            return channels[parts[1]]
        self.doc.follow(ref["$ref"], where, [])  # points to nothing: that error first
        raise _Problem(where, f"$ref {_show(ref['$ref'])} must point to a channel under "
                              "#/channels (\"#/channels/ID\")")

    def _op_messages(self, refs: Any, where: str, channel: SpecChannel) -> list[SpecMessage]:
        if not isinstance(refs, list):
            raise _Problem(where, f"must be a list of $refs to the channel's messages; got "
                                  f"{_kind(refs)}")
        out = []
        for i, ref in enumerate(refs):
            message = self._message(ref, _join(where, i))
            if message.pointer not in {m.pointer for m in channel.messages}:
                names = ", ".join(m.name for m in channel.messages) or "none"
                raise _Problem(_join(where, i), f"message {_show(message.name)} is not one of "
                               f"channel {_show(channel.id)}'s messages ({names})")
            out.append(message)
        return out

    def _message(self, node: Any, where: str) -> SpecMessage:
        node, where = self.doc.deref(node, where)
        if where not in self.messages:
            message = self.doc.mapping(node, where, "a message")
            name = message.get("name")
            self.messages[where] = SpecMessage(
                name=name if isinstance(name, str) and name else pointer_tokens(where)[-1],
                payload_schema=self._payload(message, where),
                correlation=self._correlation(message, where),
                pointer=where)
        return self.messages[where]

    def _payload(self, message: dict[str, Any], where: str) -> dict[str, Any] | None:
        if message.get("payload") is None:
            return None
        node, where = self.doc.deref(message["payload"], f"{where}/payload")
        if isinstance(node, dict) and "schemaFormat" in node:
            fmt = node["schemaFormat"]
            if not isinstance(fmt, str) or not _SCHEMA_FORMAT.fullmatch(fmt):
                raise _Problem(f"{where}/schemaFormat", f"{_show(fmt)} is not read; allowed: "
                               "AsyncAPI or JSON Schema formats (application/vnd.aai.asyncapi"
                               "[+json|+yaml];version=3.x, application/schema[+json|+yaml])")
            node, where = self.doc.deref(node.get("schema"), f"{where}/schema")
        if not isinstance(node, dict):
            raise _Problem(where, f"must be a JSON Schema object (a mapping); got {_kind(node)}")
        schema = self.doc.inline(node, where, (where,))
        try:
            validator_for(schema).check_schema(schema)
        except SchemaError as e:
            at = _join("", *e.path) or "/"
            raise _Problem(where, f"not a valid JSON Schema (at {at}): {e.message}") from None
        return schema

    def _correlation(self, message: dict[str, Any], where: str) -> Correlation | None:
        if message.get("correlationId") is None:
            return None
        node, where = self.doc.deref(message["correlationId"], f"{where}/correlationId")
        cid = self.doc.mapping(node, where, "a Correlation ID object with location")
        return _location(cid.get("location"), f"{where}/location")


def _check_version(value: object) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"3\.\d+(\.\d+)?", value):
        shown = "missing" if value is None else f"asyncapi: {_show(value)}"
        raise _Problem("/asyncapi", f"not an AsyncAPI 3 document ({shown}); catga-bench reads "
                                    "AsyncAPI 3.x")
