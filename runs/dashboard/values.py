"""What the dashboard's handlers read from a request's query and write as JSON: figures as people read them,
store values JSON can carry, and a query parameter that is not what the endpoint takes as a 400 naming it."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from l2l.runs.store_records import iso


class BadQuery(ValueError):
    """A query parameter the endpoint does not take (answered 400, with this message)."""


def shown(text: str, limit: int = 60) -> str:
    """A value the request gave, quoted for a message, cut where it is long (a page of 5,000 digits)."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    """The whole number ``name`` of the query, ``default`` where it is absent, clamped to at most ``hi``."""
    text = request.query_params.get(name)
    if text is None or text.strip() == "":
        return default
    digits = text.strip().lstrip("0") or "0"
    # any length: a page far past the last is the last (int() of thousands of digits would raise, not clamp)
    value = int(digits) if re.fullmatch(r"[0-9]{1,18}", digits) else hi + 1 if re.fullmatch(r"[0-9]+", digits) else None
    if value is None or value < lo:
        raise BadQuery(f"{name} must be a whole number >= {lo}, got {shown(text)}")
    return min(hi, value)


def choice(request: Request, name: str, known: Collection[str], default: str | None = None) -> str | None:
    """The value ``name`` of the query, one of ``known``, or ``default`` where it is absent or empty."""
    text = request.query_params.get(name)
    if not text:
        return default
    if text not in known:
        raise BadQuery(f"unknown {name} {shown(text)}; known: {', '.join(known)}")
    return text


def plain(value: Any) -> Any:
    """A value JSON can carry: times as ISO strings, NaN and infinities as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return iso(value)
    return value


def number_text(value: Any) -> str:
    """A figure as a person reads it: 4 significant digits (0.1326, 2.515e-05), whole numbers with thousands
    separators (17,891), '-' for none; 'all metrics' keeps the exact values."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.4g}"


def cost_text(value: Any) -> str:
    """A cost as the CLI writes it (`MetricView.figure`): a whole number where whole or large (17,891 flops, not
    1.789e+04), else as `number_text`."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and abs(value) >= 100:
        return f"{value:,.0f}"
    return number_text(value)


class Json(JSONResponse):
    """JSON of store values: datetimes, NaN and numpy-free floats as above; never cached by the browser."""

    def render(self, content: Any) -> bytes:
        return json.dumps(plain(content), separators=(",", ":")).encode()
