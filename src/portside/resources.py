"""Resource slots: what a session asks for and what an agent offers (runtime-semantics.md s.2.5).

A slot is a name (``cpu``, ``mem``, ``cuda.device``, ``cuda.shares``) mapped to a ``Decimal``.
``mem`` is in bytes and accepts binary size strings (``"32g"``); counts accept decimals where
the slot is fractional.  Everything here is a pure function, so placement and quota decisions
can be unit-tested without a server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from portside.errors import InvalidAPIParameters

Slots = dict[str, Decimal]

#: Every slot name this server understands; an agent offers some of them.
KNOWN_SLOTS = frozenset({"cpu", "mem", "cuda.device", "cuda.shares"})
#: Slots whose values are byte counts.
BYTE_SLOTS = frozenset({"mem"})
#: Slots that must be whole numbers.
INTEGRAL_SLOTS = frozenset({"cuda.device"})

_SIZE_RE = re.compile(
    r"^\s*(?P<num>\d+(?:[._]\d+)*(?:\.\d+)?)\s*(?P<unit>[kmgtpezy]?)(?:i?b|i?bytes)?\s*$",
    re.IGNORECASE,
)
_UNITS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6, "z": 7, "y": 8}


def parse_binary_size(value: str | int | Decimal) -> Decimal:
    """``"32g"`` is 32 GiB; plain numbers are bytes.  Fractions of a byte are refused."""
    if isinstance(value, (int, Decimal)):
        amount = Decimal(value)
    else:
        match = _SIZE_RE.match(value)
        if match is None:
            raise InvalidAPIParameters(
                f"{value!r} is not a size; write bytes or a number with k, m, g, t (e.g. 512m)"
            )
        number = Decimal(match.group("num").replace("_", ""))
        amount = number * (1024 ** _UNITS[match.group("unit").lower()])
    if amount != amount.to_integral_value():
        raise InvalidAPIParameters(f"{value!r} is not a whole number of bytes")
    return amount


def format_binary_size(value: Decimal | int) -> str:
    amount = int(value)
    for unit in ("t", "g", "m", "k"):
        scale = 1024 ** _UNITS[unit]
        if amount >= scale and amount % scale == 0:
            return f"{amount // scale}{unit}"
    return str(amount)


def _parse_count(slot: str, value: Any) -> Decimal:
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidAPIParameters(f"resource {slot!r}: {value!r} is not a number") from None
    if not amount.is_finite():
        raise InvalidAPIParameters(f"resource {slot!r}: {value!r} is not a finite number")
    if slot in INTEGRAL_SLOTS and amount != amount.to_integral_value():
        raise InvalidAPIParameters(f"resource {slot!r} counts whole devices, not {value}")
    return amount


def parse_slots(requested: Mapping[str, Any], known: Iterable[str]) -> Slots:
    """Validates a user's ``resources`` dict; zero values are dropped, unknown names refused."""
    known_set = set(known)
    slots: Slots = {}
    for slot, value in requested.items():
        if slot not in known_set:
            hint = " (shared memory goes in resource_opts)" if slot == "shmem" else ""
            raise InvalidAPIParameters(
                f"unknown resource slot {slot!r}{hint}; this server knows "
                + ", ".join(sorted(known_set))
            )
        if value is None:
            continue
        amount = parse_binary_size(value) if slot in BYTE_SLOTS else _parse_count(slot, value)
        if amount < 0:
            raise InvalidAPIParameters(f"resource {slot!r} cannot be negative")
        if amount:
            slots[slot] = amount
    return slots


def add(a: Mapping[str, Decimal], b: Mapping[str, Decimal]) -> Slots:
    return {k: a.get(k, Decimal(0)) + b.get(k, Decimal(0)) for k in set(a) | set(b)}


def scale(a: Mapping[str, Decimal], times: int) -> Slots:
    return {k: v * times for k, v in a.items()}


def subtract(a: Mapping[str, Decimal], b: Mapping[str, Decimal]) -> Slots:
    return {k: a.get(k, Decimal(0)) - b.get(k, Decimal(0)) for k in set(a) | set(b)}


def shortfalls(requested: Mapping[str, Decimal], available: Mapping[str, Decimal]) -> list[str]:
    """Human-readable reasons ``requested`` does not fit in ``available``; empty if it fits."""
    reasons = []
    for slot in sorted(requested):
        need = requested[slot]
        have = available.get(slot, Decimal(0))
        if need > have:
            reasons.append(
                f"{slot}: {describe(slot, need)} requested, {describe(slot, have)} available"
            )
    return reasons


def describe(slot: str, amount: Decimal) -> str:
    if slot in BYTE_SLOTS:
        return format_binary_size(amount) if amount > 0 else "0"
    return format(amount.normalize(), "f")


def to_json(slots: Mapping[str, Decimal]) -> dict[str, str]:
    """Backend.AI serializes slot amounts as strings (``{"cpu": "1", "mem": "1073741824"}``)."""
    return {k: format(v.normalize(), "f") for k, v in sorted(slots.items())}


def from_json(data: Mapping[str, Any] | None) -> Slots:
    return {k: Decimal(str(v)) for k, v in (data or {}).items()}
