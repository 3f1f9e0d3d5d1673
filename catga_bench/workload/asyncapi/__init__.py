"""Read a system under test (SUT) described as a black box by an AsyncAPI 3 document.

:func:`load_spec` reads a YAML or JSON file into a :class:`SutSpec`. AsyncAPI operations describe
the *application's* behaviour: ``action: receive`` means the service consumes that channel (the
harness publishes there: the INPUT); ``action: send`` means the service emits there (the harness
subscribes: the OUTPUTS).

The subset read (everything else in the document is ignored):

- ``asyncapi``: must be ``3.x``.
- ``info.title`` and ``info.version`` (strings).
- ``servers.NAME``: ``protocol`` (``nats``, ``redis``, ``http`` or ``https``), ``host``
  (``host:port``, no scheme, no ``{variables}``) and optional ``pathname`` (``/...``).
- ``channels.ID``: ``address`` (required here, a fixed subject / stream key / path without
  ``{parameters}``), ``messages`` (a map of Message Objects or refs to them) and optional
  ``servers`` (a list of refs to ``#/servers/NAME``; the input channel's says which broker
  ``--sut asyncapi`` uses: :meth:`SutSpec.input_broker`).
- ``operations.ID``: ``action`` (``send`` | ``receive``), ``channel`` (``$ref`` to
  ``#/channels/ID``) and optional ``messages`` (refs to a subset of the channel's messages; when
  absent, the operation carries all of the channel's messages).
- Message Objects: optional ``name``; ``payload`` (a JSON Schema, or a Multi Format Schema Object
  whose ``schemaFormat`` is an AsyncAPI or JSON Schema format), checked to be valid JSON Schema;
  ``correlationId.location``: ``$message.header#/NAME`` or ``$message.payload#/json/pointer``.
  The input message and every output message must declare a ``correlationId``: the harness stamps
  the id at the input's location and reads it back at each output's location.
- ``$ref`` is followed only inside the document (``#/...``), recursively (refs to refs, refs
  inside payload schemas, which are inlined); an external ref or a ref cycle is an error.

The top-level ``x-catga-bench`` object (optional; an unknown key is an error):

- ``input``: the operation id of the input, a ``receive`` operation. Default: the only
  ``receive`` operation (an error when there are several).
- ``outputs``: the operation ids that complete a message, ``send`` operations. Default: every
  ``send`` operation, in document order.
- ``payload``: the input payload template, a JSON object stored as written (strings may contain
  ``{seq}``, ``{uuid}``, ``{now_ms}``; a list means "choose one at random"). Default: ``{}``.
- ``qos``: 0, 1 or 2, the QoS of the input publish. Default: none (the run's own setting).
- ``jetstream``: ``{stream, durable, purge}``, the service's JetStream stream holding the input
  subject, its durable consumer name (informational) and whether to empty the stream before the
  run (``purge``, a bool, default false). Default: none.
- ``process``: how the harness starts the service itself (``_process.py``; docs/sut.md,
  "Starting the service"): ``command`` (a list, or a string split with ``shlex``), ``cwd``
  (relative to the document's folder; default: that folder), ``env`` (strings over
  ``os.environ``; ``{nats_url}``, ``{redis_url}``, ``{http_url}`` are filled with the run's
  effective server URLs), ``ready`` (exactly one of ``log`` (a regex), ``http`` (a URL answering
  2xx), ``tcp`` (``host:port``)), ``start_timeout_s`` (default 20) and ``stop_grace_s``
  (default 5). Default: none (the service is assumed running).
- ``redis``: ``{group, purge}``, for a service driven over Redis Streams: its consumer group
  on the input stream (a non-empty string; with ``purge`` its pending entries are acknowledged)
  and whether to trim the input stream before the run (``purge``, a bool, default false).
  Default: none.
- ``http``: ``{headers, timeout_s, ok_status}`` for ``--sut http``: extra request headers (a
  map of strings), the request timeout in seconds (> 0, default 10) and the statuses that
  succeed (a non-empty list of 100..599; default any 2xx). Default: none (those defaults).

Operations may carry the standard HTTP operation binding ``bindings.http.method`` (``GET``,
``POST``, ``PUT``, ``PATCH`` or ``DELETE``): the method ``--sut http`` sends the input with
(default ``POST``). Other bindings are ignored. A document with an ``http``/``https`` server
may have no output operation (the HTTP response then completes each message).

Every problem raises :class:`~catga_bench.errors.ConfigError` with one line naming the file, the
JSON pointer of the offending node, and what is allowed.

Layout: ``model.py`` (the result), ``_reader.py`` (reading, ``$ref`` resolution, checks),
``_process.py`` (the ``process`` block), ``_problems.py`` (the one-line errors and JSON
pointers).
"""

from catga_bench.workload.asyncapi._problems import pointer_tokens
from catga_bench.workload.asyncapi._process import PLACEHOLDERS, tcp_address
from catga_bench.workload.asyncapi._reader import (
    ACTIONS,
    PROTOCOLS,
    load_spec,
    parse_correlation_location,
)
from catga_bench.workload.asyncapi.model import (
    HTTP_METHODS,
    BenchExtension,
    Correlation,
    HttpExt,
    JetStreamExt,
    ProcessExt,
    ReadyCheck,
    RedisExt,
    SpecChannel,
    SpecMessage,
    SpecOperation,
    SpecServer,
    SutSpec,
)

__all__ = ["ACTIONS", "HTTP_METHODS", "PLACEHOLDERS", "PROTOCOLS", "BenchExtension",
           "Correlation", "HttpExt", "JetStreamExt", "ProcessExt", "ReadyCheck", "RedisExt",
           "SpecChannel", "SpecMessage", "SpecOperation", "SpecServer", "SutSpec", "load_spec",
           "parse_correlation_location", "pointer_tokens", "tcp_address"]
