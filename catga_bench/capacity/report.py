"""The capacity report: capacity.json, capacity.md and capacity.html (the same sections and
tables, :mod:`catga_bench.judge.document`'s blocks), with a plot of P99 latency (log) and the
achieved rate against the offered rate, every trial a point marked pass / fail / invalid."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catga_bench.judge.document import Para, Raw, Section, Table
from catga_bench.judge.html_page import html_document
from catga_bench.judge.markdown import markdown_page
from catga_bench.judge.values import as_dict, as_list, as_number, esc, fmt, json_safe

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FILE_NAMES = {"json": "capacity.json", "md": "capacity.md", "html": "capacity.html"}
EXIT_MEANINGS = {0: "a bracket was found", 1: "the SLO failed even at the lowest rate",
                 2: "usage error", 3: "no answer (environment failure or the budget ran out)"}
#: marker and colour of each verdict in the plot
STYLE = {"PASS": ("o", "tab:green"), "FAIL": ("x", "tab:red"), "INVALID": ("^", "tab:gray")}


def rate_text(value: Any) -> str:
    v = as_number(value)
    return "—" if v is None else f"{v:,.0f}"


def headline(doc: dict[str, Any]) -> str:
    """``capacity in [lo, hi) msg/s`` (or what the search found instead), one line."""
    res = as_dict(doc.get("result"))
    lo, hi = res.get("lo"), res.get("hi")
    width = as_number(res.get("width"))
    span = f" (width {width:.1%})" if width is not None else ""
    outcome = res.get("outcome")
    if outcome == "at_max_rate":
        text = f"capacity >= {rate_text(lo)} msg/s (held at --max-rate)"
    elif lo is None and hi is not None:
        text = f"capacity < {rate_text(hi)} msg/s"
    elif lo is None:
        text = "no capacity found"
    elif hi is None:
        text = f"capacity >= {rate_text(lo)} msg/s (no upper end found)"
    else:
        text = f"capacity in [{rate_text(lo)}, {rate_text(hi)}) msg/s{span}"
    if not res.get("confirmed") and lo is not None:
        text += ", lower bound unconfirmed"
    elif outcome == "bracket" and hi is not None and not res.get("hi_confirmed"):
        text += ", upper bound from a search trial"
    return text


def host_speed_text(speed: dict[str, Any]) -> str:
    """One line on the host speed probe's summary (capacity/hostspeed.py)."""
    spread = as_number(speed.get("spread"))
    if spread is None:
        return "not measured"
    text = (f"index {fmt(speed.get('min'))} .. {fmt(speed.get('max'))} loop iterations per "
            f"CPU second over {len(as_list(speed.get('samples')))} samples: spread "
            f"{spread:.0%}")
    if speed.get("notable"):
        text += (" - the host's own speed moved during the run: brackets measured at other "
                 "times on this host need not overlap")
    return text


def _hi_finals(res: dict[str, Any]) -> str:
    if res.get("hi_confirmed"):
        return f"exceed ratio {fmt(res.get('hi_exceed_ratio'))}: an upper bound"
    return "none ran: hi rests on a search trial"


def sections(doc: dict[str, Any], plot: str | None = None) -> list[Section]:
    """The report's sections; ``plot`` (HTML) goes after the result."""
    res = as_dict(doc.get("result"))
    ceiling = as_dict(doc.get("ceiling"))
    at_lo, at_hi = as_dict(doc.get("at_lo")), as_dict(doc.get("at_hi"))
    result = Table(("", "value"), [
        ("capacity", headline(doc)),
        ("final trials at lo", f"{fmt(res.get('final_passes'))} of {fmt(res.get('final_count'))}"
                               f" held, exceed ratio {fmt(res.get('exceed_ratio'))}"),
        ("final trials at hi", _hi_finals(res)),
        ("at lo: P99 / achieved", f"{fmt(at_lo.get('p99_ms'))} ms / "
                                  f"{rate_text(at_lo.get('achieved_rate'))} msg/s"),
        ("at hi: P99 / achieved", f"{fmt(at_hi.get('p99_ms'))} ms / "
                                  f"{rate_text(at_hi.get('achieved_rate'))} msg/s"),
        ("upper end", fmt(res.get("hi_kind"))),
        ("limited by", f"{fmt(doc.get('limited_by'))}: {fmt(doc.get('limited_by_reason'))}"),
        ("host speed", host_speed_text(as_dict(doc.get("host_speed")))),
        ("how it ended", fmt(res.get("note"))),
        ("time spent", f"{fmt(doc.get('elapsed_s'))} s of a budget of "
                       f"{fmt(as_dict(doc.get('settings')).get('max_time'))} s"),
    ])
    secs = [Section("Result", [result])]
    if plot is not None:
        secs.append(Section("Latency and achieved rate vs offered rate", [Raw(plot)]))
    secs.append(Section("Generator ceiling", [_ceiling_table(ceiling)]))
    secs.append(Section("Trials", [Para("Every trial in order; final trials confirm the lower "
                                        "bound. INVALID: the generator did not offer the rate "
                                        "(its limit, not the system's)."),
                                   _trials_table(as_list(res.get("trials")))]))
    settings = as_dict(doc.get("settings"))
    secs.append(Section("Settings", [Table(("setting", "value"),
                                           [(k, fmt(v)) for k, v in settings.items()])]))
    return secs


def _ceiling_table(c: dict[str, Any]) -> Table:
    if not c:
        return Table(("", "value"), [], empty="not measured")
    rows = [("kind", fmt(c.get("kind"))),
            ("ceiling", f"[{rate_text(c.get('lo'))}, {rate_text(c.get('hi'))}) msg/s"),
            ("P99 limit", f"{fmt(c.get('p99_limit_ms'))} ms"),
            ("source", fmt(c.get("cached") or c.get("source") or "measured now")),
            ("note", fmt(c.get("note") or c.get("error")))]
    return Table(("", "value"), rows)


def _trials_table(trials: list[Any]) -> Table:
    rows = []
    for i, raw in enumerate(trials, 1):
        t = as_dict(raw)
        rows.append((str(i), fmt(t.get("phase")), rate_text(t.get("rate")), fmt(t.get("verdict")),
                     fmt(t.get("p99_ms")), rate_text(t.get("achieved_rate")),
                     f"{fmt(t.get('breached'))}/{fmt(t.get('seconds'))}",
                     "yes" if t.get("stopped_early") else "", fmt(t.get("wall_s")),
                     fmt(t.get("reason"))))
    headers = ("#", "phase", "offered msg/s", "verdict", "P99 ms", "achieved msg/s",
               "breached s", "stopped early", "wall s", "reason")
    return Table(headers, rows, empty="no trial ran")


def plot_svg(doc: dict[str, Any]) -> str:
    """Two panels against the offered rate (log x): P99 (ms, log) and the achieved rate (log),
    each trial a point by verdict (final trials larger and hollow), the P99 limit dashed and the
    bracket shaded. Inline SVG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 5.6), layout="constrained")
    FigureCanvasAgg(fig)
    try:
        _draw(fig, doc)
        buf = io.BytesIO()
        import matplotlib

        with matplotlib.rc_context({"svg.fonttype": "none"}):
            fig.savefig(buf, format="svg", metadata={"Date": None})
    finally:
        fig.clear()
    text = buf.getvalue().decode("utf-8")
    return text[text.find("<svg"):].strip()


def _draw(fig: Figure, doc: dict[str, Any]) -> None:
    res = as_dict(doc.get("result"))
    trials = [as_dict(t) for t in as_list(res.get("trials"))]
    lat, thr = fig.subplots(2, 1, sharex=True)
    for verdict, (marker, color) in STYLE.items():
        for final in (False, True):
            xs = [t for t in trials if t.get("verdict") == verdict
                  and (t.get("phase") == "final") == final]
            if not xs:
                continue
            label = verdict.lower() + (" (final trial)" if final else "")
            style = {"marker": marker, "label": label, "s": 70 if final else 30,
                     **({"facecolors": "none", "edgecolors": color} if final and marker != "x"
                        else {"color": color})}
            rates = [float(t["rate"]) for t in xs]
            lat.scatter(rates, [as_number(t.get("p99_ms")) or float("nan") for t in xs],
                        **style)
            thr.scatter(rates, [as_number(t.get("achieved_rate")) or float("nan") for t in xs],
                        **style)
    limit = as_number(doc.get("p99_limit_ms"))
    if limit is not None:
        lat.axhline(limit, linestyle="--", color="tab:red", linewidth=1,
                    label=f"P99 limit {fmt(limit)} ms")
    rates = [float(t["rate"]) for t in trials if as_number(t.get("rate"))]
    if rates:
        thr.plot([min(rates), max(rates)], [min(rates), max(rates)], linestyle=":",
                 color="gray", linewidth=1, label="achieved = offered")
    lo, hi = as_number(res.get("lo")), as_number(res.get("hi"))
    if lo is not None and hi is not None:
        for ax in (lat, thr):
            ax.axvspan(lo, hi, color="tab:blue", alpha=0.12, label="bracket")
    ceiling = as_number(as_dict(doc.get("ceiling")).get("lo"))
    if ceiling is not None:
        for ax in (lat, thr):
            ax.axvline(ceiling, color="black", linestyle="-.", linewidth=1,
                       label="generator ceiling")
    lat.set_ylabel("P99 latency (ms, log)")
    thr.set_ylabel("achieved msg/s (log)")
    thr.set_yscale("log")
    thr.set_xlabel("offered rate (msg/s, log)")
    for ax in (lat, thr):
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", frameon=False)
    if any(as_number(t.get("p99_ms")) for t in trials):
        lat.set_yscale("log")


def write(doc: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write capacity.json/.md/.html into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / name for k, name in FILE_NAMES.items()}
    paths["json"].write_text(json.dumps(json_safe(doc), indent=2, allow_nan=False,
                                        default=str) + "\n")
    title = f"catga-bench capacity: {doc.get('scenario_name') or doc.get('scenario')}"
    code = doc.get("exit_code")
    lead = [headline(doc), f"exit code {code} ({EXIT_MEANINGS.get(code, 'unknown')})"]
    paths["md"].write_text(markdown_page(title, lead, sections(doc)))
    try:
        plot = f"<figure>\n{plot_svg(doc)}\n</figure>"
    except Exception as exc:  # a broken plot must not lose the report
        plot = f'<p class="muted">plot failed: {esc(exc)}</p>'
    css = "pass" if code == 0 else "fail"
    header = (f'<header class="banner {css}">\n<h1>{esc(title)}</h1>\n'
              f'<p class="verdict">{esc(lead[0])}</p>\n<p>{esc(lead[1])}</p>\n</header>')
    paths["html"].write_text(html_document(title, header, sections(doc, plot)))
    return paths
