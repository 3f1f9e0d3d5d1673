"""``--sut http`` without a network beyond 127.0.0.1: the loader's additions
(``x-catga-bench.http``, ``bindings.http.method``, optional outputs with an http server), the
request a document describes (URL, ``--host``, method), the run plan's ledger columns, the
error classes, and the HTTP/1.1 pool's reading of responses."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from catga_bench.errors import ConfigError
from catga_bench.targets._h1 import H1Pool
from catga_bench.targets.base import LabelledError, error_label
from catga_bench.targets.http import HttpTarget
from catga_bench.workload.asyncapi import HttpExt, load_spec
from catga_bench.workload.http import http_input
from catga_bench.workload.plan import RESPONSE_COLUMN, RunPlan
from catga_bench.workload.scenario import Scenario
from core import Error, ErrorCode

SPECS = Path(__file__).resolve().parents[1] / "integration" / "specs"
SYNC, ASYNC = SPECS / "orders-http.yaml", SPECS / "orders-http-async.yaml"


def _variant(tmp_path: Path, base: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    doc = copy.deepcopy(yaml.safe_load(base.read_text(encoding="utf-8")))
    change(doc)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _error(call: Callable[[], Any]) -> str:
    with pytest.raises(ConfigError) as info:
        call()
    text = str(info.value)
    assert "\n" not in text
    return text


# ---------------------------------------------------------------------------- the loader


def test_the_http_extension_and_the_method_binding_are_read() -> None:
    spec = load_spec(SYNC)
    assert spec.bench.http == HttpExt(headers={"X-Test": "catga"}, timeout_s=5)
    assert spec.input_operation().http_method == "POST"
    assert spec.output_operations(required=False) == []
    assert load_spec(ASYNC).bench.http == HttpExt(ok_status=[202])


def test_http_defaults_any_2xx_and_10_s() -> None:
    ext = HttpExt()
    assert (ext.headers, ext.timeout_s, ext.ok_status) == ({}, 10.0, None)
    assert [s for s in (199, 200, 201, 204, 299, 300, 404, 500) if ext.is_ok(s)] == [
        200, 201, 204, 299]
    assert [s for s in (200, 202) if HttpExt(ok_status=[202]).is_ok(s)] == [202]


def _set(*keys: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        node = doc
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return change


BAD = [
    ("timeout 0", _set("x-catga-bench", "http", "timeout_s", value=0),
     "/x-catga-bench/http/timeout_s: 0.0 is not a timeout; allowed: a number of seconds > 0"),
    ("timeout a string", _set("x-catga-bench", "http", "timeout_s", value="5"),
     "/x-catga-bench/http/timeout_s: Input should be a valid number"),
    ("status out of range", _set("x-catga-bench", "http", "ok_status", value=[200, 99]),
     "/x-catga-bench/http/ok_status/1: 99 is not an HTTP status; allowed: integers 100..599"),
    ("status a string", _set("x-catga-bench", "http", "ok_status", value=["200"]),
     "/x-catga-bench/http/ok_status/0: Input should be a valid integer"),
    ("no status", _set("x-catga-bench", "http", "ok_status", value=[]),
     "/x-catga-bench/http/ok_status: empty: no response could succeed"),
    ("header not a string", _set("x-catga-bench", "http", "headers", value={"X-N": 1}),
     "/x-catga-bench/http/headers/X-N: Input should be a valid string"),
    ("unknown http key", _set("x-catga-bench", "http", "method", value="GET"),
     '/x-catga-bench/http/method: unknown key "method"; allowed keys: headers, timeout_s, '
     "ok_status"),
    ("http not a mapping", _set("x-catga-bench", "http", value=[1]),
     "/x-catga-bench/http: Input should be a valid dictionary"),
    ("method lower case", _set("operations", "placeOrder", "bindings", "http", "method",
                               value="post"),
     '/operations/placeOrder/bindings/http/method: "post" is not read; allowed: GET, POST, PUT, '
     "PATCH, DELETE"),
    ("method HEAD", _set("operations", "placeOrder", "bindings", "http", "method",
                         value="HEAD"),
     '/operations/placeOrder/bindings/http/method: "HEAD" is not read'),
    ("binding not a mapping", _set("operations", "placeOrder", "bindings", "http", value=[1]),
     "/operations/placeOrder/bindings/http: must be an HTTP binding (a mapping); got a list"),
]


@pytest.mark.parametrize(("change", "expected"), [(c, e) for _, c, e in BAD],
                         ids=[name for name, _, _ in BAD])
def test_each_http_problem_names_the_pointer(tmp_path: Path, change: Any, expected: str) -> None:
    path = _variant(tmp_path, SYNC, change)
    assert f"{path}: {expected}" in _error(lambda: load_spec(path))


def test_outputs_stay_required_without_an_http_server(tmp_path: Path) -> None:
    def nats_only(doc: dict[str, Any]) -> None:
        doc["servers"] = {"local": {"host": "127.0.0.1:4222", "protocol": "nats"}}

    path = _variant(tmp_path, SYNC, nats_only)
    assert f"{path}: /operations: no output operation" in _error(lambda: load_spec(path))


def test_an_empty_outputs_list_means_the_response_with_an_http_server(tmp_path: Path) -> None:
    path = _variant(tmp_path, ASYNC, _set("x-catga-bench", "outputs", value=[]))
    spec = load_spec(path)
    assert spec.output_operations(required=False) == []
    assert "/x-catga-bench/outputs: no output operation" in _error(spec.output_operations)


def test_other_bindings_are_ignored(tmp_path: Path) -> None:
    path = _variant(tmp_path, SYNC, _set("operations", "placeOrder", "bindings",
                                         value={"nats": {"queue": "q"}}))
    assert load_spec(path).input_operation().http_method is None
    assert http_input(load_spec(path)).method == "POST"


# ---------------------------------------------------------------------------- the request


def test_the_url_is_the_server_and_the_channel_address(tmp_path: Path) -> None:
    request = http_input(load_spec(SYNC))
    assert (request.method, request.url, request.body) == (
        "POST", "http://127.0.0.1:8085/orders", True)
    path = _variant(tmp_path, SYNC, _set("servers", "api", value={
        "host": "orders.example:8443", "protocol": "https", "pathname": "/v1/"}))
    assert http_input(load_spec(path)).url == "https://orders.example:8443/v1/orders"


@pytest.mark.parametrize(("host", "url"), [
    ("http://10.0.0.5:9000", "http://10.0.0.5:9000/orders"),
    ("https://api.example/", "https://api.example/orders"),
    ("http://10.0.0.5:9000/base", "http://10.0.0.5:9000/base/orders"),
])
def test_host_overrides_scheme_host_and_port(host: str, url: str) -> None:
    assert http_input(load_spec(SYNC), host).url == url


@pytest.mark.parametrize("host", ["ftp://x", "127.0.0.1:8085", "http://", "http://h/?q=1"])
def test_a_bad_host_is_one_line(host: str) -> None:
    assert _error(lambda: http_input(load_spec(SYNC), host)) == (
        f"--host: expected http[s]://HOST[:PORT][/base] for --sut http, got {host!r}")


@pytest.mark.parametrize("headers", [{"X-A": "a\r\nX-B: b"}, {"X:A": "a"}, {"X-A": "\u20ac"}])
def test_a_header_that_cannot_be_sent_is_one_line(tmp_path: Path, headers: Any) -> None:
    path = _variant(tmp_path, SYNC, _set("x-catga-bench", "http", "headers", value=headers))
    name = next(iter(headers))
    assert _error(lambda: http_input(load_spec(path))) == (
        f"{path}: /x-catga-bench/http/headers/{name}: not a header; allowed: a name without "
        "':' and a one-line Latin-1 value")


def test_no_http_server_is_a_config_error_naming_servers(tmp_path: Path) -> None:
    path = _variant(tmp_path, ASYNC, lambda d: d["servers"].pop("api"))
    assert _error(lambda: http_input(load_spec(path))).startswith(
        f"{path}: /servers: no http or https server; --sut http sends each input to one")
    scenario = Scenario("s", rate=1, streams=[], sut="http", sut_spec=str(path))
    assert f"{path}: /servers: no http or https server" in _error(lambda: RunPlan.of(scenario))


def test_a_get_carries_no_body_so_its_id_must_be_a_header(tmp_path: Path) -> None:
    get = _set("operations", "placeOrder", "bindings", "http", "method", value="GET")
    request = http_input(load_spec(_variant(tmp_path, SYNC, get)))
    assert (request.method, request.body) == ("GET", False)
    path = _variant(tmp_path, ASYNC, get)  # its input's id is at $message.payload#/order_id
    assert _error(lambda: http_input(load_spec(path))) == (
        f"{path}: /components/messages/OrderPlaced/correlationId/location: a GET request has no "
        "body; put the correlation id in a header ($message.header#/NAME)")


# ---------------------------------------------------------------------------- the run plan


def test_without_outputs_the_response_is_the_one_ledger_column() -> None:
    plan = RunPlan.of(Scenario("s", rate=1, streams=[], sut="http", sut_spec=str(SYNC)))
    [stream] = plan.streams
    assert (stream.name, stream.handler_names) == ("OrderPlaced", [RESPONSE_COLUMN])
    assert plan.channels() == ["/orders"]
    assert plan.channels("http://h:1/orders") == ["http://h:1/orders"]


def test_with_outputs_each_output_is_a_column_and_a_channel() -> None:
    plan = RunPlan.of(Scenario("s", rate=1, streams=[], sut="http", sut_spec=str(ASYNC)))
    assert plan.streams[0].handler_names == ["confirmOrder"]
    assert plan.channels("http://h:1/orders/async") == ["http://h:1/orders/async",
                                                        "test.http.orders.confirmed"]


def test_the_nats_kind_still_needs_an_output() -> None:
    scenario = Scenario("s", rate=1, streams=[], sut="asyncapi", sut_spec=str(SYNC))
    assert "/operations: no output operation" in _error(lambda: RunPlan.of(scenario))
    assert "--sut http needs the service's AsyncAPI document" in _error(
        lambda: RunPlan.of(Scenario("s", rate=1, streams=[], sut="http")))


def test_error_classes_name_the_status() -> None:
    assert error_label(LabelledError(ErrorCode.HANDLER_FAILED, "HTTP 503", label="http_503")
                       ) == "http_503"
    assert error_label(Error(ErrorCode.TIMEOUT, "slow")) == "timeout"


# ---------------------------------------------------------------------------- the HTTP pool


async def _serve(responses: list[bytes]) -> tuple[asyncio.Server, int, list[bytes]]:
    """A raw server answering the n-th request on each connection with ``responses[n]``
    (a response of b"" closes the connection); returns the requests' heads."""
    heads: list[bytes] = []

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in responses:
            head = await reader.readuntil(b"\r\n\r\n")
            heads.append(head)
            length = [int(v.split(b":")[1]) for v in head.split(b"\r\n")
                      if v.lower().startswith(b"content-length:")]
            if length:
                await reader.readexactly(length[0])
            if not answer:
                break
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], heads


def _get(pool: H1Pool) -> asyncio.Future[tuple[int, BaseException | None]]:
    fut: asyncio.Future[tuple[int, BaseException | None]] = (
        asyncio.get_running_loop().create_future())
    pool.submit(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}",
                lambda status, error: fut.set_result((status, error)))
    return fut


def test_the_pool_reads_length_chunked_interim_and_close_framed_responses() -> None:
    async def main() -> list[tuple[int, BaseException | None]]:
        server, port, heads = await _serve([
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked"
            b"\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 503 Busy\r\nConnection: close\r\n\r\nbye",
        ])
        pool = H1Pool("127.0.0.1", port, limit=1, timeout_s=5)
        out = [await _get(pool) for _ in range(4)]
        assert pool.peak == 1  # one keep-alive connection for all four
        assert len(heads) == 4
        await pool.close()
        server.close()
        return out

    assert asyncio.run(main()) == [(200, None), (201, None), (204, None), (503, None)]


def test_the_pool_times_out_and_reconnects_after_a_close() -> None:
    async def main() -> tuple[Any, Any, Any]:
        server, port, _ = await _serve([b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", b""])
        pool = H1Pool("127.0.0.1", port, limit=2, timeout_s=0.3)
        first = await _get(pool)
        dropped = await _get(pool)  # the server closes instead of answering
        again = await _get(pool)  # a new connection
        await pool.close()
        server.close()
        return first, dropped, again

    first, dropped, again = asyncio.run(main())
    assert first == (200, None)
    assert dropped[0] == 0 and isinstance(dropped[1], ConnectionError)
    assert again == (200, None)


def test_the_pool_times_out_a_silent_server_and_fails_a_refused_connect() -> None:
    async def main() -> tuple[Any, Any]:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(5)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        pool = H1Pool("127.0.0.1", server.sockets[0].getsockname()[1], timeout_s=0.2)
        timed_out = await _get(pool)
        await pool.close()
        server.close()
        refused = await _get(H1Pool("127.0.0.1", 1, timeout_s=2))
        return timed_out, refused

    timed_out, refused = asyncio.run(main())
    assert timed_out[0] == 0 and isinstance(timed_out[1], TimeoutError)
    assert refused[0] == 0 and isinstance(refused[1], OSError)


# ---------------------------------------------------------------------------- the target


class _Sink:
    """The generator's side of :class:`HttpTarget`: each message's outcome (None: success, or
    the error label)."""

    def __init__(self) -> None:
        self.offered = 0
        self.outcomes: dict[int, str | None] = {}
        self.last_outcome_at = 0.0

    @property
    def in_flight(self) -> int:
        return self.offered - len(self.outcomes)

    def handled(self, stream: int, handler: int, seq: int) -> None:
        pass

    def completed(self, stream: int, seq: int, result: Any) -> bool:
        self.outcomes[seq] = None if result.ok else error_label(result.error)
        self.last_outcome_at = time.perf_counter()
        return True


async def _answer_each(answer: bytes | None) -> tuple[asyncio.Server, int, list[bytes]]:
    """A raw server answering every request with ``answer`` (b"": close the connection
    instead; None: never answer); returns the requests as received (head and body)."""
    requests: list[bytes] = []

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = [int(v.split(b":")[1]) for v in head.split(b"\r\n")
                          if v.lower().startswith(b"content-length:")]
                requests.append(head + (await reader.readexactly(length[0]) if length else b""))
                if answer is None:
                    await asyncio.sleep(10)
                if not answer:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], requests


def _run_target(tmp_path: Path, answer: bytes | None, messages: int = 3, *,
                stop_server: bool = False, timeout_s: float = 0.3,
                ) -> tuple[dict[int, str | None], dict[str, Any], list[bytes]]:
    """Offer ``messages`` requests to a raw server answering ``answer`` (closed before the
    first with ``stop_server``) with a request timeout of ``timeout_s``; the outcomes, the
    transport figures and the requests."""
    spec = load_spec(_variant(tmp_path, SYNC, lambda d: d["x-catga-bench"]["http"].update(
        timeout_s=timeout_s)))

    async def main() -> tuple[dict[int, str | None], dict[str, Any], list[bytes]]:
        server, port, requests = await _answer_each(answer)
        target = HttpTarget(spec, f"http://127.0.0.1:{port}")
        scenario = Scenario("s", rate=1, streams=[], sut="http", sut_spec=str(SYNC))
        sink = _Sink()
        await target.open(RunPlan.of(scenario), sink)  # type: ignore[arg-type]
        if stop_server:
            server.close()
            await server.wait_closed()
        for seq in range(messages):
            sink.offered += 1
            target.offer(0, seq)
        figures = await target.close(drain_timeout_s=3)
        server.close()
        return sink.outcomes, figures.transport, requests

    return asyncio.run(main())


def test_the_target_sends_the_documents_request_and_counts_statuses(tmp_path: Path) -> None:
    # a loaded CI machine may take longer than 0.3 s to answer: that test is the one below
    outcomes, figures, requests = _run_target(
        tmp_path, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", timeout_s=5.0)
    assert outcomes == {0: None, 1: None, 2: None}
    assert (figures["requests"], figures["status_200"]) == (3, 3)
    # the pool's connections may deliver the three in any order: take seq 0's
    [first] = [r for r in requests if b".0.0\r\n" in r.split(b"\r\n\r\n", 1)[0]]
    head, body = first.split(b"\r\n\r\n", 1)
    lines = head.decode().lower().split("\r\n")
    assert lines[0] == "post /orders http/1.1"
    assert {"x-test: catga", "content-type: application/json"} <= set(lines)
    assert any(line.startswith("catga-correlation-id: ") and line.endswith(".0.0")
               for line in lines)
    assert body.startswith(b'{"sku":"sku-0"')


@pytest.mark.parametrize(("answer", "label", "figure"), [
    (b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", "http_503", "status_503"),
    (None, "http_timeout", "timeouts"),  # no answer within timeout_s (0.3 s)
    (b"", "http_connect", "connect_errors"),  # the server closes instead of answering
])
def test_each_failure_has_its_label(tmp_path: Path, answer: bytes | None, label: str,
                                    figure: str) -> None:
    outcomes, figures, _ = _run_target(tmp_path, answer,
                                       timeout_s=0.3 if answer is None else 5.0)
    assert outcomes == {0: label, 1: label, 2: label}
    assert figures[figure] == 3


def test_a_refused_connection_is_http_connect(tmp_path: Path) -> None:
    outcomes, figures, _ = _run_target(tmp_path, b"", stop_server=True)
    assert set(outcomes.values()) == {"http_connect"}
    assert figures["connect_errors"] == 3


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",  # malformed: httptools rejects it
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # cut short by the close
])
def test_the_pool_fails_a_malformed_or_truncated_response(answer: bytes) -> None:
    async def answer_and_close(reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    async def main() -> tuple[int, BaseException | None]:
        server = await asyncio.start_server(answer_and_close, "127.0.0.1", 0)
        pool = H1Pool("127.0.0.1", server.sockets[0].getsockname()[1], limit=1, timeout_s=2)
        out = await _get(pool)
        await pool.close()
        server.close()
        return out

    status, error = asyncio.run(main())
    assert status == 0 and isinstance(error, ConnectionError)
