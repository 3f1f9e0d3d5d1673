"""The report page's timeline plots: latency, throughput, breakers, queue depth, each drawn
with matplotlib on its own figure (no pyplot) and embedded as inline SVG. matplotlib is imported
inside the functions that use it, so importing this module stays fast."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from catga_bench.judge.document import p99_limit_ms
from catga_bench.judge.values import as_dict, as_list, as_number, esc, fmt

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

NO_TIMELINE = "no timeline data"

_Draw = Callable[["Figure", list[float], dict[str, Any], int, dict[str, Any]], None]


def _timeline_length(tl: dict[str, Any]) -> int:
    """Seconds in the timeline: len(t_s), or the longest series when t_s is missing."""
    t_s = tl.get("t_s")
    if isinstance(t_s, list | tuple):
        return len(t_s)
    return max((len(v) for v in tl.values() if isinstance(v, list | tuple)), default=0)


def _x_values(tl: dict[str, Any], n: int) -> list[float]:
    t_s = as_list(tl.get("t_s"))
    return [v if (v := as_number(t_s[i] if i < len(t_s) else None)) is not None else float(i)
            for i in range(n)]


def _y_values(tl: dict[str, Any], key: str, n: int, positive: bool = False) -> list[float]:
    """Series ``key`` as n floats: NaN (a gap) for missing entries, None and non-numbers; with
    ``positive`` also for values <= 0 (for log axes)."""
    raw = as_list(tl.get(key))
    out: list[float] = []
    for i in range(n):
        v = as_number(raw[i]) if i < len(raw) else None
        out.append(math.nan if v is None or (positive and v <= 0) else v)
    return out


def _has_data(values: list[float]) -> bool:
    return any(not math.isnan(v) for v in values)


def plots_html(r: dict[str, Any]) -> str:
    """The four timeline plots as <figure> elements with inline SVG, or "no timeline data"."""
    tl = as_dict(r.get("timeline"))
    n = _timeline_length(tl)
    if n == 0:
        return f'<p class="muted">{NO_TIMELINE}</p>'
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        return f'<p class="muted">plots unavailable: {esc(exc)}</p>'
    x = _x_values(tl, n)
    plots: tuple[tuple[str, _Draw], ...] = (
        ("Latency over time (from intended send time)", _draw_latency),
        ("Throughput", _draw_throughput),
        ("Circuit breakers, rejections and timeouts", _draw_breakers),
        ("Queue depth and in-flight messages", _draw_queue),
    )
    return "\n".join(_plot_figure(title, draw, x, tl, n, r) for title, draw in plots)


def _plot_figure(title: str, draw: _Draw, x: list[float], tl: dict[str, Any], n: int,
                 r: dict[str, Any]) -> str:
    try:
        svg = _render_svg(draw, x, tl, n, r)
    except Exception as exc:  # one broken plot must not lose the report
        log.exception("catga-bench: could not draw plot %r", title)
        return f'<p class="muted">{esc(title)}: plot failed ({esc(exc)})</p>'
    return f"<figure>\n<figcaption>{esc(title)}</figcaption>\n{svg}\n</figure>"


def _render_svg(draw: _Draw, x: list[float], tl: dict[str, Any], n: int,
                r: dict[str, Any]) -> str:
    """Draw on a fresh Agg-canvas figure (no pyplot, no global figure registry) and return the
    SVG markup without its XML prolog. The figure is cleared after saving."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    try:
        with matplotlib.rc_context({"svg.fonttype": "none"}):
            draw(fig, x, tl, n, r)
            fig.savefig(buf, format="svg", metadata={"Date": None})
    finally:
        fig.clear()
    text = buf.getvalue().decode("utf-8")
    start = text.find("<svg")
    return text[start:].strip() if start >= 0 else ""


def _style_axes(ax: Any, ylabel: str) -> None:
    ax.set_xlabel("seconds since start")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


def _no_data(ax: Any) -> None:
    ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center",
            color="gray")


def _legend(fig: Figure, handles: list[Any], labels: list[str]) -> None:
    """One legend row above the axes, so it never hides data."""
    fig.legend(handles, labels, loc="outside upper right", ncols=len(labels), fontsize="small",
               frameon=False)


def _marker(n: int) -> str | None:
    return "." if n <= 60 else None


def _draw_latency(fig: Figure, x: list[float], tl: dict[str, Any], n: int,
                  r: dict[str, Any]) -> None:
    """p50 / p99 / max latency per second (ms, log y) and the p99 SLO limit, dashed."""
    ax = fig.add_subplot()
    drawn = False
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max")):
        y = _y_values(tl, key, n, positive=True)
        if _has_data(y):
            ax.plot(x, y, label=label, marker=_marker(n), linewidth=1.2)
            drawn = True
    limit = p99_limit_ms(r)
    if limit is not None:
        ax.axhline(limit, linestyle="--", color="tab:red", linewidth=1,
                   label=f"p99 SLO {fmt(limit)} ms")
        drawn = True
    if drawn:
        ax.set_yscale("log")
        _legend(fig, *ax.get_legend_handles_labels())
    else:
        _no_data(ax)
    _style_axes(ax, "latency (ms, log)")


def _draw_throughput(fig: Figure, x: list[float], tl: dict[str, Any], n: int,
                     r: dict[str, Any]) -> None:
    """Sent and completed messages per second, and the offered rate, dashed."""
    ax = fig.add_subplot()
    drawn = False
    for key, label in (("sent", "sent"), ("completed", "completed")):
        y = _y_values(tl, key, n)
        if _has_data(y):
            ax.plot(x, y, label=label, marker=_marker(n), linewidth=1.2)
            drawn = True
    offered = as_number(r.get("offered_rate"))
    if offered is not None:
        ax.axhline(offered, linestyle="--", color="gray", linewidth=1,
                   label=f"offered {fmt(offered)} msg/s")
        drawn = True
    if drawn:
        ax.set_ylim(bottom=0)
        _legend(fig, *ax.get_legend_handles_labels())
    else:
        _no_data(ax)
    _style_axes(ax, "msg/s")


def _draw_breakers(fig: Figure, x: list[float], tl: dict[str, Any], n: int,
                   r: dict[str, Any]) -> None:
    """Breakers open (step, left axis); rejected and timeouts per second (right axis)."""
    from matplotlib.ticker import MaxNLocator

    ax = fig.add_subplot()
    opened = _y_values(tl, "breaker_open", n)
    if _has_data(opened):
        ax.step(x, opened, where="post", color="tab:red", label="breakers open")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _style_axes(ax, "breakers open")
    twin = ax.twinx()
    for key, color in (("rejected", "tab:orange"), ("timeouts", "tab:purple")):
        y = _y_values(tl, key, n)
        if _has_data(y):
            twin.plot(x, y, color=color, label=f"{key} /s", linewidth=1.2, marker=_marker(n))
    twin.set_ylabel("per second")
    ax.set_ylim(bottom=0)
    twin.set_ylim(bottom=0)
    handles, labels = ax.get_legend_handles_labels()
    more_handles, more_labels = twin.get_legend_handles_labels()
    if handles or more_handles:
        _legend(fig, handles + more_handles, labels + more_labels)
    else:
        _no_data(ax)


def _draw_queue(fig: Figure, x: list[float], tl: dict[str, Any], n: int,
                r: dict[str, Any]) -> None:
    """Limiter wait-queue depth (max per second) and messages in flight."""
    ax = fig.add_subplot()
    drawn = False
    for key, label in (("queue_depth", "queue depth"), ("in_flight", "in flight")):
        y = _y_values(tl, key, n)
        if _has_data(y):
            ax.plot(x, y, label=label, marker=_marker(n), linewidth=1.2)
            drawn = True
    if drawn:
        ax.set_ylim(bottom=0)
        _legend(fig, *ax.get_legend_handles_labels())
    else:
        _no_data(ax)
    _style_axes(ax, "messages")
