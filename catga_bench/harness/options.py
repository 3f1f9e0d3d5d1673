"""catga-bench's options on Locust's own command line, and their validation.

Every value arrives as a string and is validated here, so a bad one gives exit code 2 and one
line naming the option and what is allowed (argparse's own errors would print Locust's usage).
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from typing import Any

from catga_bench.errors import ConfigError
from catga_bench.workload.slo import SLOTargets, load_slo_file, parse_targets

TRANSPORTS = ("embedded", "nats", "redis")
#: systems under test (--sut): the reference core, or a black box described by AsyncAPI (its
#: input over NATS, or as HTTP requests)
SUTS = ("core", "asyncapi", "http")
#: report files a run can write (--report-formats); json always
REPORT_FORMATS = ("json", "md", "html")
DEFAULT_URLS = {"nats": "nats://127.0.0.1:4222", "redis": "redis://127.0.0.1:6379"}

#: --slo-* options -> SLOTargets field and value type
SLO_OPTIONS: dict[str, tuple[str, type]] = {
    "slo_p50_ms": ("p50_ms", float),
    "slo_p99_ms": ("p99_ms", float),
    "slo_p999_ms": ("p999_ms", float),
    "slo_min_throughput": ("min_throughput", float),
    "slo_max_error_ratio": ("max_error_ratio", float),
    "slo_max_lost": ("max_lost", int),
    "slo_max_duplicates": ("max_duplicates", int),
    "slo_max_duplicate_ratio": ("max_duplicate_ratio", float),
    "slo_max_loop_lag_p99_ms": ("max_loop_lag_p99_ms", float),
    "slo_min_timeouts": ("min_timeouts", int),
    "slo_min_rejected": ("min_rejected", int),
    "slo_max_late": ("max_late", int),
    "slo_max_unexpected": ("max_unexpected", int),
    "slo_max_nonconformant": ("max_nonconformant", int),
}


def add_arguments(parser: Any) -> None:
    """Add catga-bench's options to Locust's parser (``init_command_line_parser`` event)."""
    g = parser.add_argument_group(
        "catga-bench",
        "Options of catga-bench (the scenario file sets the defaults; see README.md)",
    )
    g.add_argument("--transport", default="embedded", metavar="NAME",
                   help="Where the core runs: embedded (in this process), or nats / redis (a "
                        "separate `catga-bench serve --transport X` process, over the broker). "
                        "Default: embedded")
    g.add_argument("--sut", default=None, metavar="KIND",
                   help="The system under test: core (the reference core, embedded or served "
                        "with --transport), asyncapi (any service, a black box described by "
                        "--sut-spec; docs/sut.md) or http (the same, its input sent as HTTP "
                        "requests; --host overrides the document's server). Default: the "
                        "scenario's (core)")
    g.add_argument("--sut-spec", default=None, metavar="FILE",
                   help="The AsyncAPI 3 document of an --sut asyncapi|http service (default: "
                        "the scenario's)")
    # set by the master of a distributed run; Locust ships it to the workers (black-box runs:
    # every generator's correlation ids start with it, so siblings' outputs are not strangers)
    g.add_argument("--catga-run", default="", help=argparse.SUPPRESS)
    # set by `catga-bench capacity` on its trials: quit after N seconds of sustained SLO breach
    g.add_argument("--catga-stop-on-breach-s", default="0", help=argparse.SUPPRESS)
    g.add_argument("--sut-running", action="store_true", default=False,
                   help="The service is already running: do not start the document's "
                        "x-catga-bench.process (a chaos experiment, or your own dev loop)")
    g.add_argument("--nats-url", default=None, metavar="URL",
                   help="NATS server for --transport nats. Default: $CATGA_NATS_URL or "
                        "nats://127.0.0.1:4222")
    g.add_argument("--redis-url", default=None, metavar="URL",
                   help="Redis server for --transport redis (default: $CATGA_REDIS_URL or "
                        "redis://127.0.0.1:6379), or of an --sut asyncapi service over Redis "
                        "Streams (default: the document's redis server)")
    g.add_argument("--rate", default=None, metavar="MSG_PER_S",
                   help="Offered load, messages/s for the whole test (open model: sent on "
                        "schedule whatever the system does). Default: the scenario's")
    g.add_argument("--qos", default=None, metavar="0|1|2",
                   help="0 at-most-once, 1 at-least-once, 2 exactly-once. Default: scenario's")
    g.add_argument("--handlers", default=None, metavar="N",
                   help="Handlers per event for scenarios that generate them (high_fanout)")
    g.add_argument("--report-dir", default=None, metavar="DIR",
                   help="Where report.json/.md/.html go. Default: reports/<scenario>-<time>/")
    g.add_argument("--report-formats", default=None, metavar="LIST",
                   help="Which of report.json, .md, .html to write, comma-separated (json is "
                        "always written: gates and compare read it). The HTML page draws its "
                        "plots with matplotlib, about 1.5 s per run. Default: "
                        "$CATGA_REPORT_FORMATS or json,md,html")
    g.add_argument("--metrics-port", default="0", metavar="PORT",
                   help="Serve the core's Prometheus /metrics on this port (worker processes "
                        "use the next free ports). Default: 0 = off")
    g.add_argument("--slo-file", default=None, metavar="TOML",
                   help="SLO targets from a TOML file (keys as in docs; unknown keys are errors)")
    g.add_argument("--slo-p50-ms", default=None, metavar="MS", help="P50 latency limit")
    g.add_argument("--slo-p99-ms", default=None, metavar="MS",
                   help="P99 latency limit, from intended send time")
    g.add_argument("--slo-p999-ms", default=None, metavar="MS", help="P99.9 latency limit")
    g.add_argument("--slo-min-throughput", default=None, metavar="MSG_PER_S",
                   help="Achieved throughput at least")
    g.add_argument("--slo-max-error-ratio", default=None, metavar="RATIO",
                   help="Failed/completed messages at most (0..1)")
    g.add_argument("--slo-max-lost", default=None, metavar="N",
                   help="Lost messages at most (QoS >= 1)")
    g.add_argument("--slo-max-duplicates", default=None, metavar="N",
                   help="Duplicates handled at most (QoS 2)")
    g.add_argument("--slo-max-duplicate-ratio", default=None, metavar="RATIO",
                   help="QoS 1 duplicates / handlings at most (0..1; at-least-once budget, "
                        "off by default)")
    g.add_argument("--slo-max-loop-lag-p99-ms", default=None, metavar="MS",
                   help="Event-loop lag P99 limit")
    g.add_argument("--slo-min-timeouts", default=None, metavar="N",
                   help="Handler timeouts at least")
    g.add_argument("--slo-min-rejected", default=None, metavar="N",
                   help="Backpressure rejections at least")
    g.add_argument("--slo-max-late", default=None, metavar="N",
                   help="Black box: outputs after their message was counted lost, at most")
    g.add_argument("--slo-max-unexpected", default=None, metavar="N",
                   help="Black box: outputs matching no message of the run, at most")
    g.add_argument("--slo-max-nonconformant", default=None, metavar="N",
                   help="Black box: outputs failing their message's schema, at most")


@dataclass(frozen=True)
class RunOptions:
    """Validated catga-bench options."""

    transport: str
    broker_url: str | None
    rate: float | None
    qos: int | None
    handlers: int | None
    report_dir: str | None
    metrics_port: int
    slo_overrides: dict[str, Any]
    sut: str | None = None  # None: the scenario's
    sut_spec: str | None = None  # None: the scenario's
    nats_url: str | None = None  # an explicit --nats-url / CATGA_NATS_URL, else None
    stop_on_breach_s: int = 0  # > 0: stop after this many seconds of sustained SLO breach
    report_formats: tuple[str, ...] = REPORT_FORMATS  # always with "json"


def _number(option: str, raw: str, kind: type, *, minimum: float, strict: bool) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{option}: expected {what}, got {raw!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{option}: expected a finite number, got {raw!r}")
    if (strict and value <= minimum) or (not strict and value < minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ConfigError(f"{option}: must be {bound}, got {raw!r}")
    return value


def parse_options(ns: Any) -> RunOptions:
    """Validate Locust's parsed namespace.

    Raises:
        ConfigError: one line naming the option and what is allowed.
    """
    transport = str(getattr(ns, "transport", "embedded") or "embedded")
    if transport not in TRANSPORTS:
        raise ConfigError(f"--transport: {transport!r} is not supported; allowed: "
                          f"{', '.join(TRANSPORTS)}")
    broker_url: str | None = None
    if transport != "embedded":
        attr = f"{transport}_url"
        env = os.environ.get(f"CATGA_{transport.upper()}_URL")
        broker_url = str(getattr(ns, attr, None) or env or DEFAULT_URLS[transport])
        scheme = "nats" if transport == "nats" else "redis"
        if not broker_url.startswith((f"{scheme}://", f"{scheme}s://")) and not (
                transport == "nats" and broker_url.startswith(("tls://", "ws://"))):
            raise ConfigError(f"--{transport}-url: expected {scheme}://HOST:PORT, "
                              f"got {broker_url!r}")
    rate = getattr(ns, "rate", None)
    rate_v = None if rate in (None, "") else _number("--rate", rate, float, minimum=0,
                                                     strict=True)
    qos = getattr(ns, "qos", None)
    qos_v = None
    if qos not in (None, ""):
        if str(qos) not in ("0", "1", "2"):
            raise ConfigError(f"--qos: allowed values are 0, 1, 2; got {qos!r}")
        qos_v = int(qos)
    handlers = getattr(ns, "handlers", None)
    handlers_v = None if handlers in (None, "") else _number("--handlers", handlers, int,
                                                             minimum=1, strict=False)
    port = _number("--metrics-port", str(getattr(ns, "metrics_port", "0") or "0"), int,
                   minimum=0, strict=False)
    if port > 65535:
        raise ConfigError(f"--metrics-port: must be 0..65535, got {port}")
    overrides: dict[str, Any] = {}
    slo_file = getattr(ns, "slo_file", None)
    if slo_file:
        overrides.update(load_slo_file(slo_file))
    for attr, (field, kind) in SLO_OPTIONS.items():
        raw = getattr(ns, attr, None)
        if raw in (None, ""):
            continue
        option = "--" + attr.replace("_", "-")
        if str(raw).lower() == "off":
            overrides[field] = None
            continue
        value = _number(option, raw, kind, minimum=0, strict=False)
        parse_targets({field: value}, source=option)  # its own range (ratio <= 1, > 0, ...)
        overrides[field] = value
    SLOTargets().merged(overrides)  # validate ranges now (ratio <= 1, ...)
    sut, sut_spec = _sut(ns)
    nats_url = getattr(ns, "nats_url", None) or os.environ.get("CATGA_NATS_URL")
    stop_s = _number("--catga-stop-on-breach-s",
                     str(getattr(ns, "catga_stop_on_breach_s", "0") or "0"), int, minimum=0,
                     strict=False)
    return RunOptions(transport, broker_url, rate_v, qos_v, handlers_v,
                      getattr(ns, "report_dir", None), port, overrides, sut, sut_spec,
                      nats_url, stop_s,
                      report_formats(getattr(ns, "report_formats", None)
                                     or os.environ.get("CATGA_REPORT_FORMATS")))


def report_formats(raw: str | None) -> tuple[str, ...]:
    """``--report-formats`` (or ``$CATGA_REPORT_FORMATS``): a comma-separated subset of json,
    md, html (json is added: the gates read it). Raises ConfigError naming an unknown format
    and the allowed ones."""
    if raw in (None, ""):
        return REPORT_FORMATS
    asked = [f.strip().lower() for f in str(raw).split(",") if f.strip()]
    unknown = [f for f in asked if f not in REPORT_FORMATS]
    if unknown:
        raise ConfigError(f"--report-formats: {unknown[0]!r} is not a report format; "
                          f"allowed: {', '.join(REPORT_FORMATS)}")
    return tuple(f for f in REPORT_FORMATS if f == "json" or f in asked)


def _sut(ns: Any) -> tuple[str | None, str | None]:
    """``--sut`` and ``--sut-spec``. Raises ConfigError: an unknown kind, or a spec file that
    does not exist."""
    sut = getattr(ns, "sut", None) or None
    if sut is not None and sut not in SUTS:
        raise ConfigError(f"--sut: {sut!r} is not supported; allowed: {', '.join(SUTS)}")
    spec = getattr(ns, "sut_spec", None) or None
    if spec is not None and not os.path.isfile(spec):
        raise ConfigError(f"--sut-spec: no such file: {spec}")
    return sut, spec
