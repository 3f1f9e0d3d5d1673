"""Formatting a report's values for tables and text: "—" for a missing value, thousands
separators, a few significant decimals, one-line free text, strict JSON, HTML escaping. Any value
may be missing, ``None`` or of an unexpected type: nothing here raises on it."""

from __future__ import annotations

import html
import json
import math
from typing import Any

DASH = "—"


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a dict, else ``{}``."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` as a list if it is a list or tuple, else ``[]``."""
    return list(value) if isinstance(value, list | tuple) else []


def as_number(value: Any) -> float | None:
    """A finite real number as float; None for None, bools, strings, NaN and ±inf."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def as_count(value: Any) -> int:
    """A count for sorting and summing: non-numbers count as 0."""
    v = as_number(value)
    return int(v) if v is not None else 0


def fmt(value: Any) -> str:
    """Format a value for a table cell: "—" for None/NaN, thousands separators for large
    numbers, at most ~3 significant decimals for small ones, "yes"/"no" for bools."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return _fmt_float(value)
    if isinstance(value, str):
        return value if value.strip() else DASH
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value) if value else DASH
    if isinstance(value, dict):
        return json.dumps(json_safe(value), default=str) if value else DASH
    return str(value)


def _fmt_float(v: float) -> str:
    if math.isnan(v):
        return DASH
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a == 0:
        return "0"
    text = f"{v:.1f}" if a >= 100 else f"{v:.2f}" if a >= 1 else f"{v:.3g}"
    if "." in text and "e" not in text:
        text = text.rstrip("0").rstrip(".")
    return text


def with_unit(value: Any, unit: Any) -> str:
    text = fmt(value)
    u = unit.strip() if isinstance(unit, str) else ""
    return f"{text} {u}" if u and text != DASH else text


def one_line(value: Any) -> str:
    """A one-line string for free text (newlines folded)."""
    return " ".join(fmt(value).split()) or DASH


def json_safe(value: Any) -> Any:
    """``value`` with NaN and ±inf as None, sets and tuples as lists, odd dict keys as strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_json_key(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    return value


def _json_key(key: Any) -> Any:
    return key if isinstance(key, str | int | float | bool) or key is None else str(key)


def esc(text: Any) -> str:
    """``text`` as HTML text or attribute value."""
    return html.escape(str(text), quote=True)
