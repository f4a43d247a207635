"""Who hears which session events: SSE listeners all of them, a creating request its own."""

from __future__ import annotations

import asyncio

from portside.services.events import EventHub, SessionEvent


def _event(session_id: str, status: str) -> SessionEvent:
    return SessionEvent(
        name=f"session_{status.lower()}",
        session_id=session_id,
        session_name=f"name-{session_id}",
        access_key="AKTEST",
        status=status,
    )


async def test_a_session_subscriber_hears_only_its_session() -> None:
    hub = EventHub()
    async with hub.subscribe("a") as mine, hub.subscribe() as everything:
        for session_id, status in (("b", "PENDING"), ("a", "PENDING"), ("b", "RUNNING")):
            await hub.publish(_event(session_id, status))
        await hub.publish(_event("a", "RUNNING"))
        assert [(e.session_id, e.status) for e in _drain(mine)] == [
            ("a", "PENDING"),
            ("a", "RUNNING"),
        ]
        assert len(_drain(everything)) == 4


async def test_leaving_unsubscribes() -> None:
    hub = EventHub()
    async with hub.subscribe("a") as first:
        async with hub.subscribe("a") as second:
            await hub.publish(_event("a", "PENDING"))
        await hub.publish(_event("a", "RUNNING"))
    await hub.publish(_event("a", "TERMINATED"))
    assert [e.status for e in _drain(first)] == ["PENDING", "RUNNING"]
    assert [e.status for e in _drain(second)] == ["PENDING"]


def _drain(queue: asyncio.Queue[SessionEvent]) -> list[SessionEvent]:
    items: list[SessionEvent] = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items
