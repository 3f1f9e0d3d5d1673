"""Reading generated dashboard JSON back: the PromQL of every panel (:func:`panel_queries`,
for running it against a real Prometheus) and the panels allowed to be empty
(:func:`empty_unless`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

from catga_bench.observability.dashboards.panels import EMPTY_UNLESS


def _walk_panels(panels: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _walk_panels(panel.get("panels") or [])


#: Grafana's built-in interval variables, and what ``panel_queries`` puts in their place.
DEFAULT_SUBSTITUTIONS = {
    "__rate_interval": "30s",
    "__interval": "15s",
    "__range": "15m",
}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def panel_queries(
    dashboard_json: dict[str, Any] | str,
    substitutions: dict[str, str] | None = None,
) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every panel query, with template variables replaced by values
    usable against Prometheus directly (``$__rate_interval`` -> ``30s``, ``$__interval`` ->
    ``15s``; override through ``substitutions``, keyed by variable name without ``$``).

    Raises ValueError on a variable it has no value for.
    """
    dash = json.loads(dashboard_json) if isinstance(dashboard_json, str) else dashboard_json
    values = {**DEFAULT_SUBSTITUTIONS, **(substitutions or {})}

    def replace(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise ValueError(f"no value for template variable ${name} in {m.string!r}")
        return values[name]

    out = []
    for panel in _walk_panels(dash.get("panels") or []):
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if expr:
                out.append((panel.get("title", ""), _VARIABLE.sub(replace, expr)))
    return out


def empty_unless(dashboard_json: dict[str, Any] | str) -> dict[str, str]:
    """Panels whose queries may rightly return no series in a healthy run: title -> the
    condition under which they return data (from the panel description's caveat)."""
    dash = json.loads(dashboard_json) if isinstance(dashboard_json, str) else dashboard_json
    out = {}
    for panel in _walk_panels(dash.get("panels") or []):
        desc = panel.get("description") or ""
        if EMPTY_UNLESS in desc:
            out[panel["title"]] = desc.split(EMPTY_UNLESS, 1)[1].rstrip(".")
    return out
