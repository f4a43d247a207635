"""Which pending sessions start now, and why the others wait (runtime-semantics.md s.2.5).

Pure functions, so each rule is a unit test: ``never_fits`` turns an impossible request into a
400 at creation; ``plan`` walks the queue in order, starts what fits, and gives every session
that waits a ``status_info`` saying why.  The queue is strictly first-come first-served for
capacity (a large session is not starved by smaller ones behind it); a session held back by its
own keypair's limits does not hold up anyone else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from portside.resources import Slots, add, shortfalls, subtract


@dataclass(frozen=True, slots=True)
class KeypairLimits:
    max_concurrent_sessions: int
    #: Slot limits; a slot not listed is unlimited unless ``unlisted_unlimited`` is false.
    total_resource_slots: Mapping[str, Decimal]
    unlisted_unlimited: bool = True


@dataclass(slots=True)
class KeypairUsage:
    sessions: int = 0
    occupied: Slots = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Candidate:
    session_id: str
    access_key: str
    requested: Slots
    limits: KeypairLimits


@dataclass(slots=True)
class Plan:
    start: list[str] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)


def never_fits(requested: Mapping[str, Decimal], capacity: Mapping[str, Decimal]) -> list[str]:
    """Reasons a request exceeds the whole capacity (so it could never start)."""
    return shortfalls(requested, capacity)


def keypair_block(
    requested: Mapping[str, Decimal], limits: KeypairLimits, usage: KeypairUsage
) -> str | None:
    if usage.sessions >= limits.max_concurrent_sessions:
        return (
            f"your keypair may run {limits.max_concurrent_sessions} sessions at once "
            "and that many are running"
        )
    for slot, amount in requested.items():
        limit = limits.total_resource_slots.get(slot)
        if limit is None:
            if limits.unlisted_unlimited:
                continue
            limit = Decimal(0)
        used = usage.occupied.get(slot, Decimal(0))
        if used + amount > limit:
            return (
                f"your keypair's {slot} limit is {limit}; {used} is in use "
                f"and {amount} more was requested"
            )
    return None


def plan(
    queue: Iterable[Candidate], free: Mapping[str, Decimal], usage: Mapping[str, KeypairUsage]
) -> Plan:
    result = Plan()
    available = dict(free)
    usage = {k: KeypairUsage(v.sessions, dict(v.occupied)) for k, v in usage.items()}
    blocked_reason: str | None = None
    for candidate in queue:
        key_usage = usage.setdefault(candidate.access_key, KeypairUsage())
        reason = keypair_block(candidate.requested, candidate.limits, key_usage)
        if reason is not None:
            result.waiting[candidate.session_id] = reason
            continue
        if blocked_reason is not None:
            result.waiting[candidate.session_id] = blocked_reason
            continue
        missing = shortfalls(candidate.requested, available)
        if missing:
            blocked_reason = "waiting for resources to free up: " + "; ".join(missing)
            result.waiting[candidate.session_id] = blocked_reason
            continue
        available = subtract(available, candidate.requested)
        key_usage.sessions += 1
        key_usage.occupied = add(key_usage.occupied, candidate.requested)
        result.start.append(candidate.session_id)
    return result
