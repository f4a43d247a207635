"""Durations as Backend.AI spells them: ``30``, ``"30s"``, ``"5m"``, ``"1.5h"``, ``"2d"``,
``"1w"``, and calendar ``"1mo"``/``"1yr"`` (runtime-semantics.md s.4.4)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from dateutil.relativedelta import relativedelta

from portside.errors import InvalidAPIParameters

_RE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>s|m|h|d|w|mo|yr)?\s*$")
_SECONDS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _parse(value: float | str) -> tuple[float, str | None]:
    if isinstance(value, bool):
        raise InvalidAPIParameters(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        number, unit = float(value), None
    else:
        match = _RE.match(value)
        if match is None:
            raise InvalidAPIParameters(
                f"{value!r} is not a duration; write seconds or a number with s, m, h, d, w, "
                "mo or yr (e.g. 3600s, 1h)"
            )
        number, unit = float(match.group("num")), match.group("unit")
    if number < 0:
        raise InvalidAPIParameters(f"{value!r}: a duration cannot be negative")
    return number, unit


def seconds(value: float | str) -> float:
    """A duration in seconds; calendar units are refused here (their length varies)."""
    number, unit = _parse(value)
    if unit in ("mo", "yr"):
        raise InvalidAPIParameters(f"{value!r}: give this duration in s, m, h, d or w")
    return number * _SECONDS[unit]


def after(start: datetime, value: float | str) -> datetime:
    """The moment ``value`` after ``start``, counting months and years on the calendar."""
    number, unit = _parse(value)
    if unit == "mo":
        return start + relativedelta(months=int(number))
    if unit == "yr":
        return start + relativedelta(years=int(number))
    return start + timedelta(seconds=number * _SECONDS[unit])
