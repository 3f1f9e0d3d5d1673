"""Where and how ``--sut http`` sends each input: the request a loaded AsyncAPI document
describes (docs/sut.md, "HTTP").

* URL: the document's first ``http``/``https`` server (``protocol://host`` + ``pathname``) and
  the input channel's ``address`` (a path; a missing leading ``/`` is added). Locust's
  ``--host`` (``http[s]://HOST[:PORT][/base]``) replaces ``protocol://host``, and its path,
  when not empty, replaces the server's ``pathname``.
* method: the input operation's ``bindings.http.method``, default ``POST``. A ``GET`` has no
  body, so its input message must carry the correlation id in a header.
* ``x-catga-bench.http``: extra headers, the timeout, the statuses that succeed
  (:class:`~catga_bench.workload.asyncapi.HttpExt`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from catga_bench.errors import ConfigError
from catga_bench.workload.asyncapi import HttpExt, SutSpec


@dataclass(frozen=True, slots=True)
class HttpInput:
    """The request of each input.

    Attributes:
        method: ``GET``, ``POST``, ``PUT``, ``PATCH`` or ``DELETE``.
        url: ``scheme://host:port/path`` (no query).
        options: ``x-catga-bench.http`` (defaults when the document has none).
        body: False for ``GET`` (the payload is not sent).
    """

    method: str
    url: str
    options: HttpExt
    body: bool


def http_input(spec: SutSpec, host: str | None = None) -> HttpInput:
    """The request ``spec`` describes; ``host`` is Locust's ``--host`` (or None).

    Raises:
        ConfigError: one line: the document has no http server (``/servers``), a ``GET``
            input carries its correlation id in the payload, or ``host`` is not
            ``http[s]://HOST[:PORT][/base]``.
    """
    server = spec.server("http")
    if server is None:
        raise ConfigError(f"{spec.path}: /servers: no http or https server; --sut http sends "
                          "each input to one (servers: {api: {protocol: http, host: "
                          "\"127.0.0.1:8085\"}})")
    op = spec.input_operation()
    method = op.http_method or "POST"
    corr = op.messages[0].correlation if op.messages else None
    if method == "GET" and corr is not None and corr.where == "payload":
        raise ConfigError(f"{spec.path}: {op.messages[0].pointer}/correlationId/location: a GET "
                          "request has no body; put the correlation id in a header "
                          "($message.header#/NAME)")
    _check_headers(spec)
    base, pathname = f"{server.protocol}://{server.host}", server.pathname
    if host:
        parts = urlsplit(host)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ConfigError(f"--host: expected http[s]://HOST[:PORT][/base] for --sut http, "
                              f"got {host!r}")
        base = f"{parts.scheme}://{parts.netloc}"
        if parts.path.rstrip("/"):
            pathname = parts.path.rstrip("/")
    address = op.channel.address
    path = address if address.startswith("/") else "/" + address
    return HttpInput(method=method, url=base + pathname.rstrip("/") + path,
                     options=spec.bench.http or HttpExt(), body=method != "GET")


def _check_headers(spec: SutSpec) -> None:
    """``x-catga-bench.http.headers``: one-line Latin-1 values, names without ``:``."""
    for name, value in (spec.bench.http.headers if spec.bench.http else {}).items():
        bad = not name or ":" in name or any(c in name + value for c in "\r\n")
        try:
            (name + value).encode("latin-1")
        except UnicodeEncodeError:
            bad = True
        if bad:
            raise ConfigError(f"{spec.path}: /x-catga-bench/http/headers/{name}: not a header; "
                              "allowed: a name without ':' and a one-line Latin-1 value")


__all__ = ["HttpInput", "http_input"]
