"""The vocabulary the dashboards are written in: PromQL helpers and the panel model.

PromQL snippets shared by several panels (:func:`rate`, :func:`quantile`, ...), the
datasource-independent model (:class:`Query`, :class:`PanelSpec`, :class:`Row`,
:class:`DashboardSpec`) and short constructors for each panel kind (:func:`ts`,
:func:`stat`, :func:`timeline`). ``boards.py`` builds the dashboards from these; ``render.py``
turns them into Grafana JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

#: Sentence a panel's description starts its caveat with when its queries can return no series
#: in a healthy run (e.g. no breaker configured); ``queries.empty_unless`` reads it.
EMPTY_UNLESS = "Empty unless "

# ------------------------------------------------------------------------------ PromQL helpers
RI = "$__rate_interval"


def rate(metric: str, selector: str = "") -> str:
    """``rate(metric{selector}[$__rate_interval])``."""
    return f"rate({metric}{selector}[{RI}])"


def quantile(q: float, buckets: str, by: str = "") -> str:
    """``histogram_quantile`` over ``buckets`` (a vector of bucket *rates*)."""
    group = ", ".join(["le", *([by] if by else [])])
    return f"histogram_quantile({q}, sum by ({group}) ({buckets}))"


def kinded_buckets() -> str:
    """Event and command duration bucket rates, labelled ``kind`` (events or commands), so one
    query returns data whichever of the two a service handles."""
    return (
        f'label_replace({rate("catga_event_duration_milliseconds_bucket")}, '
        f'"kind", "events", "", "") or '
        f'label_replace({rate("catga_command_duration_milliseconds_bucket")}, '
        f'"kind", "commands", "", "")'
    )


def zero_if_absent(expr: str) -> str:
    """``expr`` or a zero when it has no series: only for sums whose absence means zero."""
    return f"{expr} or on() vector(0)"


PUBLISHED_RATE = f"sum({rate('catga_messages_published_total')})"
FAILED_RATE = f"sum({rate('catga_messages_failed_total')})"
COMPLETED_RATE = f"sum({rate('catga_bench_messages_completed_total')})"
COMPLETED_RATE_OF = (
    'sum(rate(catga_bench_messages_completed_total{{outcome="{outcome}"}}[$__rate_interval]))'
)
SLO_P99 = 'max(catga_bench_slo_target{target="p99_ms"})'
BREAKER_OPEN_REJECTS = zero_if_absent(f"sum({rate('catga_circuit_breaker_rejected_total')})")
HANDLER_FAILURES = zero_if_absent(f"sum({rate('catga_event_handler_failures_total')})")


# --------------------------------------------------------------------------------- the model
@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL target of a panel."""

    expr: str
    legend: str = ""


@dataclass(frozen=True, slots=True)
class PanelSpec:
    """A panel, independent of the datasource form it is rendered in."""

    kind: Literal["timeseries", "stat", "state-timeline"]
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None
    #: (value, color) threshold steps; the first value is the base (None).
    thresholds: tuple[tuple[float | None, str], ...] = ()
    #: value -> (text, color) for stat and state-timeline panels.
    mappings: tuple[tuple[int, str, str], ...] = ()
    #: legends drawn as dashed red threshold lines (SLO targets).
    slo_lines: tuple[str, ...] = ()
    #: when set, the panel may rightly show no data in a healthy run, unless this holds.
    empty_unless: str | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """A titled group of panels."""

    title: str
    panels: tuple[PanelSpec, ...]


@dataclass(frozen=True, slots=True)
class DashboardSpec:
    """A dashboard: uid (also the file name), title, description and rows of panels."""

    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    fault_annotations: bool = False
    tags: tuple[str, ...] = ("catga",)


BREAKER_STATES = ((0, "closed", "green"), (1, "open", "red"), (2, "half-open", "orange"))
FAULT_STATES = ((0, "off", "transparent"), (1, "FAULT", "red"))
LATENCY_THRESHOLDS = ((None, "green"), (100.0, "red"))


def ts(title: str, description: str, *queries: Query, **kw: Any) -> PanelSpec:
    """A time-series panel (half width, 8 high unless ``kw`` says otherwise)."""
    return PanelSpec("timeseries", title, description, tuple(queries), **kw)


def stat(title: str, description: str, *queries: Query, **kw: Any) -> PanelSpec:
    """A stat panel (4 wide, 4 high unless ``kw`` says otherwise)."""
    kw.setdefault("width", 4)
    kw.setdefault("height", 4)
    return PanelSpec("stat", title, description, tuple(queries), **kw)


def timeline(title: str, description: str, *queries: Query, **kw: Any) -> PanelSpec:
    """A state-timeline panel (full width, 6 high unless ``kw`` says otherwise)."""
    kw.setdefault("width", 24)
    kw.setdefault("height", 6)
    return PanelSpec("state-timeline", title, description, tuple(queries), **kw)


def breaker_state(title: str) -> PanelSpec:
    """The timeline of every circuit breaker's state (empty when no handler has a breaker)."""
    return timeline(
        title,
        "Each circuit breaker's state (catga_circuit_breaker_state): closed, open (calls fail "
        "fast), half-open (probing).",
        Query("max by (breaker) (catga_circuit_breaker_state)", "{{breaker}}"),
        mappings=BREAKER_STATES,
        empty_unless="a handler has a circuit breaker",
    )
