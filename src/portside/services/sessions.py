"""Compute sessions: create or reuse, schedule, start, watch and end them.

The database row is the truth about a session; the agent holds its kernel.  Every status change
goes through ``_transition``, which records it in the status history and publishes an event.
A background scheduler starts pending sessions in order as capacity allows
(``scheduler/placement.py`` decides); a background checker ends idle ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from portside import resources
from portside.agent.base import (
    Agent,
    AgentError,
    KernelExit,
    KernelInfo,
    KernelSpec,
    MountSpec,
    Placer,
    placer_of,
)
from portside.apps import session_apps
from portside.db.engine import Database
from portside.db.models import (
    DEAD_STATUSES,
    TERMINAL_STATUSES,
    KeyPair,
    KeyPairResourcePolicy,
    SessionRow,
)
from portside.db.repositories import identity
from portside.db.repositories.identity import Principal
from portside.errors import (
    InsufficientPrivilege,
    InvalidAPIParameters,
    InvalidSessionState,
    ObjectNotFound,
    SessionAlreadyExists,
)
from portside.images import Image, ImageRegistry
from portside.scheduler.placement import Candidate, KeypairLimits, KeypairUsage, never_fits, plan

from .cache import RefreshedCache
from .events import STATUS_EVENTS, EventHub, SessionEvent

log = logging.getLogger("portside.sessions")

NAME_RE = re.compile(r"^(?=.{4,64}$)\w[\w.-]*\w$")
SESSION_TYPES = ("interactive", "batch", "inference")
#: How long ``maxWaitSeconds: 0`` waits for a session to start before answering ``TIMEOUT``.
DEFAULT_CREATE_WAIT = 60.0
IDLE_CHECK_INTERVAL = 5.0
#: How often calls' activity (last access, query counts) is written to the database: often
#: enough for the idle check and other servers, rarely enough to keep writes off every call.
ACTIVITY_FLUSH_INTERVAL = 1.0
#: How long a call into a running session trusts the last lookup of that session (kept fresh in
#: the background while it is in use, ``RefreshedCache``).  Changes made on this server apply
#: at once; a session another server ends or renames is seen within this time.
RUNNING_CACHE_SECONDS = 1.0


#: A lookup of a session: the caller's access key, the name or id they gave, and the owner an
#: administrator named.
_Reference = tuple[str, str, str | None]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class SessionRequest:
    """A validated creation request (the API maps Backend.AI's JSON onto this)."""

    image: str
    name: str | None = None
    type: str = "interactive"
    group: str = "default"
    domain: str = "default"
    resources: dict[str, Any] = field(default_factory=dict)
    resource_opts: dict[str, Any] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=dict)
    mounts: list[MountSpec] = field(default_factory=list)
    mount_names: list[str] = field(default_factory=list)
    preopen_ports: list[int] = field(default_factory=list)
    startup_command: str | None = None
    bootstrap_script: str | None = None
    tag: str | None = None
    priority: int = 10
    enqueue_only: bool = False
    max_wait: float = 0
    reuse: bool = True
    architecture: str | None = None
    batch_timeout: float | None = None
    starts_at: datetime | None = None
    callback_url: str | None = None
    dependencies: list[str] = field(default_factory=list)
    owner_access_key: str | None = None


@dataclass
class _Active:
    """In-process bookkeeping of a session with a kernel on this server."""

    busy: int = 0
    start_task: asyncio.Task[None] | None = None
    #: The row as the session became RUNNING, until the create call waiting for it takes it.
    started: SessionRow | None = None


@dataclass
class _Activity:
    """Calls made to a session since its activity was last written down."""

    last_access: datetime
    queries: int = 0


class SessionService:
    def __init__(
        self,
        db: Database,
        agent: Agent,
        images: ImageRegistry,
        events: EventHub,
        *,
        default_idle_timeout: float,
    ) -> None:
        self.db = db
        self.agent = agent
        self.images = images
        self.events = events
        self.default_idle_timeout = default_idle_timeout
        self._wakeup = asyncio.Event()
        self._active: dict[uuid.UUID, _Active] = {}
        self._activity: dict[uuid.UUID, _Activity] = {}
        self._flush_lock = asyncio.Lock()
        self._running: RefreshedCache[_Reference, SessionRow] = RefreshedCache(
            self._reload_running, ttl=RUNNING_CACHE_SECONDS
        )
        self._running_keys: dict[uuid.UUID, set[_Reference]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._capacity: dict[str, Decimal] = {}

    # Start-up and background work ---------------------------------------------------------

    async def start(self) -> None:
        async with self.db() as db:
            placed = (
                await db.execute(
                    sa.select(SessionRow).where(
                        SessionRow.status.in_(("RUNNING", "SCHEDULED", "PREPARING", "TERMINATING")),
                        SessionRow.agent_id.is_not(None),
                    )
                )
            ).scalars()
            live = [KernelInfo.from_dict(r.kernel_info) for r in placed if r.kernel_info]
        survived = await self.agent.start(live, self._on_kernel_exit)
        self._capacity = await self.agent.capacity()
        async with self.db() as db:
            rows = list(
                (
                    await db.execute(
                        sa.select(SessionRow).where(
                            SessionRow.status.in_(
                                ("RUNNING", "SCHEDULED", "PREPARING", "TERMINATING")
                            )
                        )
                    )
                ).scalars()
            )
        for row in rows:
            kernel_id = str(row.kernel_id) if row.kernel_id else None
            if row.status == "TERMINATING":
                await self._finish_termination(row.id, kernel_id, "user-requested")
            elif kernel_id is None or not survived.get(kernel_id, False):
                exit_info = self.agent.kernel_exit(kernel_id) if kernel_id else None
                reason = (
                    exit_info.reason
                    if exit_info
                    else "the kernel was lost while the server was down"
                )
                await self._fail(row.id, reason, {})
        self._tasks = [
            asyncio.create_task(self._schedule_loop(), name="scheduler"),
            asyncio.create_task(self._idle_loop(), name="idle-checker"),
            asyncio.create_task(self._activity_loop(), name="activity-writer"),
            asyncio.create_task(self._running.run(), name="running-sessions-refresher"),
        ]
        self._wakeup.set()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for active in self._active.values():
            if active.start_task is not None:
                active.start_task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush_activity()

    # Lookups ------------------------------------------------------------------------------

    async def attach(self, row: SessionRow) -> None:
        """Makes sure this server reaches the session's kernel: with several servers on one
        database, another one may have started it."""
        kernel_id = str(row.kernel_id) if row.kernel_id else None
        if kernel_id and row.kernel_info and not self.agent.knows(kernel_id):
            await self.agent.adopt(KernelInfo.from_dict(row.kernel_info))

    async def get(self, session_id: uuid.UUID) -> SessionRow:
        async with self.db() as db:
            return await self._load(db, session_id)

    async def _load(self, db: AsyncSession, session_id: uuid.UUID) -> SessionRow:
        row = await db.get(SessionRow, session_id)
        if row is None:
            raise ObjectNotFound(f"session {session_id} does not exist", object_name="session")
        return row

    async def resolve(
        self,
        db: AsyncSession,
        principal: Principal,
        reference: str,
        owner_access_key: str | None = None,
        *,
        include_error: bool = True,
    ) -> SessionRow:
        """The caller's live session named or numbered ``reference`` (admins: anyone's)."""
        access_key = principal.access_key
        if owner_access_key and owner_access_key != principal.access_key:
            if not principal.is_admin:
                raise InsufficientPrivilege("only administrators may act on others' sessions")
            access_key = owner_access_key
        excluded = DEAD_STATUSES if include_error else TERMINAL_STATUSES
        cond = SessionRow.name == reference
        with contextlib.suppress(ValueError):
            cond = sa.or_(cond, SessionRow.id == uuid.UUID(reference))
        query = sa.select(SessionRow).where(cond, SessionRow.status.not_in(excluded))
        if not (principal.is_admin and owner_access_key is None and _looks_like_uuid(reference)):
            query = query.where(SessionRow.access_key == access_key)
        rows = list((await db.execute(query.order_by(SessionRow.created_at.desc()))).scalars())
        if not rows:
            raise ObjectNotFound(f"there is no session {reference!r}", object_name="session")
        # A live session wins over an errored one of the same name.
        rows.sort(key=lambda r: r.status == "ERROR")
        return rows[0]

    async def running(
        self, principal: Principal, reference: str, owner_access_key: str | None = None
    ) -> SessionRow:
        """``resolve`` for a call into a session, from memory when it was RUNNING a moment ago.

        Executing code is the hot path: a query per call was a fifth of its round trip.
        """
        key = (principal.access_key, reference, owner_access_key)
        cached = self._running.get(key)
        if cached is not None:
            return cached
        async with self.db() as db:
            row = await self.resolve(db, principal, reference, owner_access_key)
        if row.status == "RUNNING":
            self._remember_running(key, row)
        else:
            self._running.forget(key)
        return row

    def _remember_running(self, key: _Reference, row: SessionRow) -> None:
        self._running.put(key, row)
        self._running_keys.setdefault(row.id, set()).add(key)

    def forget_running(self, session_id: uuid.UUID) -> None:
        for key in self._running_keys.pop(session_id, ()):
            self._running.forget(key)

    async def _reload_running(
        self, cached: dict[_Reference, SessionRow]
    ) -> dict[_Reference, SessionRow]:
        """The kept lookups whose sessions still run under the names they had when read.  Any
        other change drops a lookup, and the next call reads its session again."""
        ids = {row.id for row in cached.values()}
        async with self.db() as db:
            rows = await db.execute(
                sa.select(SessionRow.id, SessionRow.name, SessionRow.status).where(
                    SessionRow.id.in_(ids)
                )
            )
            now = {session_id: (name, status) for session_id, name, status in rows.tuples()}
        return {key: row for key, row in cached.items() if now.get(row.id) == (row.name, "RUNNING")}

    # Creation ------------------------------------------------------------------------------

    def requested_slots(self, image: Image, requested: dict[str, Any]) -> resources.Slots:
        """A request's slots, image minimums filled in; a 400 if it can never be served."""
        placer = placer_of(self.agent)
        if placer is not None:
            # Nodes join and leave the cluster: its slots are those of the nodes alive now.
            self._capacity = placer.offered()
        slots = self._requested_slots(image, requested)
        # A cluster that places sessions itself can serve a request if any one node can.
        impossible = placer.never_fits(slots) if placer else never_fits(slots, self._capacity)
        if impossible:
            raise InvalidAPIParameters(
                "the request can never be served here: " + "; ".join(impossible),
                data={
                    "requested": resources.to_json(slots),
                    "capacity": resources.to_json(self._capacity),
                },
            )
        return slots

    def _requested_slots(self, image: Image, requested: dict[str, Any]) -> resources.Slots:
        slots = resources.parse_slots(requested, self._capacity.keys() | {"cpu", "mem"})
        for slot, minimum in image.min_slots.items():
            if slot not in slots:
                slots[slot] = minimum
            elif slots[slot] < minimum:
                raise InvalidAPIParameters(
                    f"{image.name} needs at least {resources.describe(slot, minimum)} of "
                    f"{slot}; {resources.describe(slot, slots[slot])} was requested"
                )
        return slots

    async def create(self, principal: Principal, req: SessionRequest) -> dict[str, Any]:
        owner = principal
        if req.owner_access_key and req.owner_access_key != principal.access_key:
            if not principal.is_admin:
                raise InsufficientPrivilege("only administrators may create sessions for others")
            async with self.db() as db:
                key = await identity.get_active_key(db, req.owner_access_key)
            if key is None:
                raise ObjectNotFound("the owner's keypair does not exist", object_name="keypair")
            owner = key.principal
        name = req.name or f"pysdk-{uuid.uuid4().hex[:8]}"
        if not NAME_RE.match(name):
            raise InvalidAPIParameters(
                f"session name {name!r} must be 4 to 64 letters, digits, '.', '-' or '_', "
                "starting and ending with a letter or digit"
            )
        if req.type not in SESSION_TYPES:
            raise InvalidAPIParameters(f"unknown session type {req.type!r}")
        if req.type == "batch" and not req.startup_command:
            raise InvalidAPIParameters("batch sessions need a startup_command")
        if req.type != "batch" and (req.starts_at or req.batch_timeout):
            raise InvalidAPIParameters("starts_at and batch_timeout are for batch sessions only")
        image = self.images.resolve(req.image)
        session_id = uuid.uuid4()
        # Subscribed before the session exists, so no status change can slip past unseen.
        async with self.events.subscribe(str(session_id)) as events:

            def find_or_insert(db: Session) -> tuple[SessionRow, bool]:
                existing = self._find_live_by_name(db, owner.access_key, name)
                if existing is not None:
                    return existing, False
                slots = self.requested_slots(image, req.resources)
                return self._insert(db, session_id, owner, name, image, slots, req), True

            row, created = await self.db.run(find_or_insert)
            if not created:
                return self._reuse_or_refuse(row, image, req)
            await self._publish(row, "PENDING")
            self._wakeup.set()
            if req.enqueue_only:
                return self._creation_reply(row, created=True)
            status = await self._wait_for_start(events, req.max_wait or DEFAULT_CREATE_WAIT)
        active = self._active.get(session_id)
        if status == "RUNNING" and active is not None and active.started is not None:
            # Started by this server: the row as it became RUNNING saves reading it back.
            row, active.started = active.started, None
        else:
            async with self.db() as db:
                row = await self._load(db, session_id)
        if status in ("TERMINATED", "CANCELLED"):
            raise ObjectNotFound(
                f"the session ended while starting: {row.status_info or status}",
                object_name="session",
            )
        if row.status == "RUNNING":
            # The caller's next request is usually code to run in it, by name or by id.
            for reference in (row.name, str(row.id)):
                self._remember_running((principal.access_key, reference, req.owner_access_key), row)
        reply = self._creation_reply(row, created=True)
        if status is None:
            reply["status"] = "TIMEOUT"
        return reply

    def _insert(
        self,
        db: Session,
        session_id: uuid.UUID,
        owner: Principal,
        name: str,
        image: Image,
        slots: resources.Slots,
        req: SessionRequest,
    ) -> SessionRow:
        group = identity.get_group(db, req.domain, req.group)
        if not owner.is_superadmin and not identity.is_group_member(db, group.id, owner.user_id):
            raise InsufficientPrivilege(f"you are not a member of the project {req.group!r}")
        now = utcnow()
        row = SessionRow(
            id=session_id,
            name=name,
            access_key=owner.access_key,
            user_id=owner.user_id,
            domain_name=req.domain,
            group_id=group.id,
            image=image.name,
            architecture=req.architecture or image.architecture,
            type=req.type,
            tag=req.tag,
            priority=req.priority,
            status="PENDING",
            status_history=[["PENDING", now.isoformat()]],
            status_changed=now,
            requested_slots=resources.to_json(slots),
            resource_opts=req.resource_opts,
            environ=req.environ,
            mounts=[_mount_json(m) for m in req.mounts],
            preopen_ports=req.preopen_ports,
            startup_command=req.startup_command,
            bootstrap_script=req.bootstrap_script,
            batch_timeout=req.batch_timeout,
            callback_url=req.callback_url,
            dependencies=req.dependencies,
            starts_at=req.starts_at,
            created_at=now,
            last_access=now,
        )
        db.add(row)
        try:
            db.flush()
        except IntegrityError:
            raise SessionAlreadyExists(f"a session named {name!r} was just created") from None
        return row

    def _find_live_by_name(self, db: Session, access_key: str, name: str) -> SessionRow | None:
        params = {"access_key": access_key, "name": name}
        return db.execute(_LIVE_BY_NAME, params).scalar_one_or_none()

    def _reuse_or_refuse(
        self, row: SessionRow, image: Image, req: SessionRequest
    ) -> dict[str, Any]:
        if row.image != image.name:
            raise SessionAlreadyExists(
                f"a session named {row.name!r} already exists with another image ({row.image})",
                data={"existingSessionId": str(row.id)},
            )
        if not req.reuse:
            raise SessionAlreadyExists(
                f"a session named {row.name!r} already exists",
                data={"existingSessionId": str(row.id)},
            )
        reply = self._creation_reply(row, created=False)
        reply["service_ports"] = reply["servicePorts"]
        return reply

    def _creation_reply(self, row: SessionRow, *, created: bool) -> dict[str, Any]:
        return {
            "sessionId": str(row.id),
            "sessionName": row.name,
            "status": row.status,
            "servicePorts": row.service_ports if row.status == "RUNNING" else [],
            "created": created,
        }

    async def _wait_for_start(
        self, events: asyncio.Queue[SessionEvent], timeout: float
    ) -> str | None:
        """The first of RUNNING or a terminal status the session reaches, None on timeout.

        ``events`` is the session's own subscription, made before the session was created.
        """
        wanted = ("RUNNING", *TERMINAL_STATUSES)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                event = await asyncio.wait_for(events.get(), remaining)
            except TimeoutError:
                return None
            if event.status in wanted:
                return event.status

    # Status changes ------------------------------------------------------------------------

    async def _transition(
        self,
        session_id: uuid.UUID,
        status: str,
        *,
        info: str | None = None,
        expect: Sequence[str] | None = None,
        via: Sequence[str] = (),
        **values: Any,
    ) -> SessionRow | None:
        """Moves a session to ``status`` (only from ``expect``, when given) and announces it.

        ``via`` names statuses passed through on the way, recorded and announced in order in
        the same transaction (a session that is scheduled and at once prepared).
        """

        row = await self.db.run(
            lambda db: _change_status(db, session_id, status, info, expect, via, values)
        )
        if row is not None:
            await self._announce(row, status, info or "", via)
        return row

    async def _announce(
        self, row: SessionRow, status: str, reason: str, via: Sequence[str] = ()
    ) -> None:
        """Tells everyone listening that ``row`` has just changed to ``status`` (through
        ``via``)."""
        self.forget_running(row.id)
        for passed in via:
            await self._publish(row, passed)
        await self._publish(row, status, reason)

    async def _publish(self, row: SessionRow, status: str, reason: str = "") -> None:
        exit_code = (row.status_data or {}).get("kernel", {}).get("exit_code")
        await self.events.publish(
            SessionEvent(
                name=STATUS_EVENTS.get(status, f"session_{status.lower()}"),
                session_id=str(row.id),
                session_name=row.name,
                access_key=row.access_key,
                status=status,
                reason=reason,
                exit_code=exit_code,
            )
        )

    async def _fail(self, session_id: uuid.UUID, reason: str, data: dict[str, Any]) -> None:
        row = await self._transition(
            session_id,
            "ERROR",
            info=reason,
            expect=("PENDING", "SCHEDULED", "PREPARING", "RUNNING", "TERMINATING"),
            status_data={"kernel": data},
            result="FAILURE",
        )
        if row is not None:
            log.warning("session failed", extra={"session": str(session_id), "reason": reason})

    async def _on_kernel_exit(self, event: KernelExit) -> None:
        async with self.db() as db:
            row = (
                await db.execute(
                    sa.select(SessionRow).where(SessionRow.kernel_id == uuid.UUID(event.kernel_id))
                )
            ).scalar_one_or_none()
        if row is None or row.status in (*TERMINAL_STATUSES, "TERMINATING"):
            # Gone already, or ending on purpose (another server may be destroying it).
            return
        data = {"exit_code": event.exit_code, "signal": event.signal, "oom": event.out_of_memory}
        await self._fail(row.id, event.reason, data)
        self._active.pop(row.id, None)
        self._wakeup.set()

    # Scheduling ---------------------------------------------------------------------------

    async def _schedule_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self._schedule_once()
            except Exception:
                log.exception("scheduling failed; retrying shortly")
                await asyncio.sleep(1)
                self._wakeup.set()

    async def _schedule_once(self) -> None:
        placer = placer_of(self.agent)
        if placer is not None:
            state = await self.db.run(_scheduling_state)
            if state.pending:
                await self._schedule_placed(placer, state)
            return
        capacity = self._capacity

        def schedule(db: Session) -> list[SessionRow]:
            # Reading what runs, deciding and marking the chosen sessions PREPARING is one
            # transaction: one unit of work fewer per session start.
            state = _scheduling_state(db)
            if not state.pending:
                return []
            usage = state.usage()
            occupied: resources.Slots = {}
            for key_usage in usage.values():
                occupied = resources.add(occupied, key_usage.occupied)
            decision = plan(
                state.candidates(utcnow()), resources.subtract(capacity, occupied), usage
            )
            for session_id, reason in decision.waiting.items():
                _note_waiting(db, uuid.UUID(session_id), reason)
            started = []
            for session_id in decision.start:
                sid = uuid.UUID(session_id)
                values = {"scheduled_at": utcnow(), "occupying_slots": state.requested(sid)}
                row = _change_status(
                    db, sid, "PREPARING", None, ("PENDING",), ("SCHEDULED",), values
                )
                if row is not None:
                    started.append(row)
            return started

        for row in await self.db.run(schedule):
            await self._announce(row, "PREPARING", "", via=("SCHEDULED",))
            active = self._active.setdefault(row.id, _Active())
            active.start_task = asyncio.create_task(self._start_kernel(row))

    async def _schedule_placed(self, placer: Placer, state: _SchedulingState) -> None:
        """Scheduling when the agent's cluster places sessions (the Ray backend).

        Keypair limits are still applied here; capacity is the cluster's business: each
        session that may start is queued there, stays PENDING until it has a node, and only
        then goes on to SCHEDULED.  The order of that queue is the cluster's.
        """
        self._capacity = placer.offered()
        async with self.db() as db:
            live = (
                await db.execute(
                    sa.select(SessionRow.id).where(SessionRow.status.not_in(TERMINAL_STATUSES))
                )
            ).scalars()
            wanted = {str(session_id) for session_id in live}
        await placer.release_unwanted(wanted)
        candidates = state.candidates(utcnow())
        # Every candidate fits in this "capacity": only the keypair limits hold one back.
        unbounded: resources.Slots = {}
        for candidate in candidates:
            unbounded = resources.add(unbounded, candidate.requested)
        decision = plan(candidates, unbounded, state.usage())
        for session_id, reason in decision.waiting.items():
            await self._set_status_info(uuid.UUID(session_id), reason)
        for session_id in decision.start:
            sid = uuid.UUID(session_id)
            requested = state.requested(sid)
            waiting = await placer.reserve(
                session_id, resources.from_json(requested), self._wakeup.set
            )
            if waiting is not None:
                await self._set_status_info(sid, waiting)
                continue
            started = await self._transition(
                sid,
                "PREPARING",
                via=("SCHEDULED",),
                expect=("PENDING",),
                scheduled_at=utcnow(),
                occupying_slots=requested,
            )
            if started is not None:
                active = self._active.setdefault(sid, _Active())
                active.start_task = asyncio.create_task(self._start_kernel(started))

    async def _set_status_info(self, session_id: uuid.UUID, info: str) -> None:
        await self.db.run(lambda db: _note_waiting(db, session_id, info))

    async def _start_kernel(self, row: SessionRow) -> None:
        """Starts the kernel of a session that has just become PREPARING."""
        session_id = row.id
        spec = KernelSpec(
            session_id=str(row.id),
            image=row.image,
            resources=dict(row.occupying_slots),
            environ={
                **{str(k): str(v) for k, v in row.environ.items()},
                "BACKENDAI_SESSION_NAME": row.name,
                "BACKENDAI_ACCESS_KEY": row.access_key,
                "BACKENDAI_USER_UUID": str(row.user_id),
            },
            mounts=tuple(MountSpec(**m) for m in row.mounts),
            bootstrap_script=row.bootstrap_script,
        )
        try:
            info = await self.agent.create_kernel(spec)
        except (AgentError, Exception) as e:
            log.exception("kernel creation failed for session %s", session_id)
            await self._fail(session_id, f"the kernel could not be created: {e}", {})
            self._wakeup.set()
            return
        image = self.images.resolve(row.image)
        service_ports = [
            app.as_service_port()
            for app in await asyncio.to_thread(session_apps, image, row.preopen_ports)
        ]
        started = await self._transition(
            session_id,
            "RUNNING",
            expect=("PREPARING",),
            agent_id=info.agent_id,
            kernel_id=uuid.UUID(info.kernel_id),
            kernel_info=info.to_dict(),
            service_ports=service_ports,
            last_access=utcnow(),
        )
        if started is None:
            # Destroyed while it was starting: the kernel has nobody to serve.
            await self.agent.destroy_kernel(info.kernel_id)
        elif (active := self._active.get(session_id)) is not None:
            active.started = started

    # Changing running sessions ------------------------------------------------------------

    async def restart(
        self, principal: Principal, reference: str, owner_access_key: str | None = None
    ) -> None:
        """A fresh kernel in the same sandbox: variables are lost, files are kept."""
        async with self.db() as db:
            row = await self.resolve(db, principal, reference, owner_access_key)
        if row.status != "RUNNING" or row.kernel_id is None:
            raise InvalidSessionState(
                f"only running sessions can restart; this one is {row.status}"
            )
        try:
            await self.agent.restart_kernel(str(row.kernel_id))
        except AgentError as e:
            await self._fail(row.id, f"the kernel could not be restarted: {e}", {})
            raise InvalidSessionState(f"the kernel could not be restarted: {e}") from e
        self.touch(row.id, query=True)
        await self.events.publish(
            SessionEvent("session_restarted", str(row.id), row.name, row.access_key, row.status)
        )

    async def rename(
        self,
        principal: Principal,
        reference: str,
        new_name: str,
        owner_access_key: str | None = None,
    ) -> None:
        if not NAME_RE.match(new_name):
            raise InvalidAPIParameters(
                f"session name {new_name!r} must be 4 to 64 letters, digits, '.', '-' or '_'"
            )
        async with self.db() as db, db.begin():
            row = await self.resolve(db, principal, reference, owner_access_key)
            if row.status != "RUNNING":
                raise InvalidSessionState(
                    f"only running sessions can be renamed; this one is {row.status}"
                )
            clash = await db.run_sync(self._find_live_by_name, row.access_key, new_name)
            if clash is not None and clash.id != row.id:
                raise SessionAlreadyExists(
                    f"you already have a session named {new_name!r}",
                    data={"existingSessionId": str(clash.id)},
                )
            row.name = new_name
        self.forget_running(row.id)

    # Ending sessions ----------------------------------------------------------------------

    async def destroy(
        self,
        principal: Principal,
        reference: str,
        *,
        forced: bool = False,
        recursive: bool = False,
        owner_access_key: str | None = None,
        reason: str = "user-requested",
    ) -> dict[str, Any]:
        # The transitions below read the row again and check its status, so a session known
        # RUNNING a moment ago needs no query to find (a session never returns to PENDING).
        row = await self.running(principal, reference, owner_access_key)
        return await self._destroy_row(
            row.id, forced=forced, reason=reason, maybe_pending=row.status == "PENDING"
        )

    async def destroy_by_id(self, session_id: uuid.UUID, *, reason: str) -> dict[str, Any]:
        """Ends a session on the platform's own behalf (a replica being replaced, say)."""
        return await self._destroy_row(session_id, forced=False, reason=reason)

    async def _destroy_row(
        self, session_id: uuid.UUID, *, forced: bool, reason: str, maybe_pending: bool = True
    ) -> dict[str, Any]:
        """``maybe_pending`` False: the session was seen past PENDING (it never goes back)."""
        if maybe_pending:
            cancelled = await self._transition(
                session_id, "CANCELLED", info=reason, expect=("PENDING",)
            )
            if cancelled is not None:
                return {"stats": {"status": "cancelled"}}
        row = await self._transition(
            session_id,
            "TERMINATING",
            info=reason,
            expect=("SCHEDULED", "PREPARING", "RUNNING", "ERROR"),
        )
        if row is None:
            return {"stats": {}}
        kernel_id = str(row.kernel_id) if row.kernel_id else None
        if forced:
            task = asyncio.create_task(self._finish_termination(session_id, kernel_id, reason))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        else:
            await self._finish_termination(session_id, kernel_id, reason)
        return {"stats": {"status": "terminated"}}

    async def _finish_termination(
        self, session_id: uuid.UUID, kernel_id: str | None, reason: str
    ) -> None:
        active = self._active.pop(session_id, None)
        if active is not None and active.start_task is not None and not active.start_task.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await active.start_task
            async with self.db() as db:
                row = await self._load(db, session_id)
            kernel_id = str(row.kernel_id) if row.kernel_id else kernel_id
        if kernel_id is not None:
            try:
                if not self.agent.knows(kernel_id):
                    await self.attach(await self.get(session_id))
                await self.agent.destroy_kernel(kernel_id)
            except AgentError as e:
                log.warning("kernel %s could not be destroyed cleanly: %s", kernel_id, e)
        await self._transition(
            session_id, "TERMINATED", info=reason, expect=("TERMINATING",), result="SUCCESS"
        )
        self._wakeup.set()

    # Idle sessions ------------------------------------------------------------------------

    def mark_busy(self, session_id: uuid.UUID, delta: int) -> None:
        """Counts activity that keeps a session from being idle (running calls, open streams)."""
        active = self._active.setdefault(session_id, _Active())
        active.busy = max(0, active.busy + delta)

    def touch(self, session_id: uuid.UUID, *, query: bool = False) -> None:
        """Notes a call to the session; written to the database within a second, or at once
        by ``flush_activity`` before anyone reads the figures."""
        activity = self._activity.get(session_id)
        if activity is None:
            activity = self._activity[session_id] = _Activity(utcnow())
        else:
            activity.last_access = utcnow()
        if query:
            activity.queries += 1

    async def flush_activity(self) -> None:
        """Writes the activity noted so far.  When it returns, every ``touch`` made before the
        call is in the database: a caller that finds another flush writing waits for it."""
        async with self._flush_lock:
            if self._activity:
                pending, self._activity = self._activity, {}
                try:
                    await self._write_activity(pending)
                except BaseException:
                    self._merge_back(pending)
                    raise

    def _merge_back(self, pending: dict[uuid.UUID, _Activity]) -> None:
        """Returns activity a failed write took, to be written with the next flush."""
        for session_id, old in pending.items():
            current = self._activity.get(session_id)
            if current is None:
                self._activity[session_id] = old
            else:
                current.queries += old.queries

    async def _write_activity(self, pending: dict[uuid.UUID, _Activity]) -> None:
        table = cast(sa.Table, SessionRow.__table__)
        statement = (
            sa.update(table)
            .where(table.c.id == sa.bindparam("session_id"))
            .values(
                last_access=sa.bindparam("when"),
                num_queries=table.c.num_queries + sa.bindparam("queries"),
            )
        )
        params = [
            {"session_id": sid, "when": a.last_access, "queries": a.queries}
            for sid, a in pending.items()
        ]
        async with self.db() as db, db.begin():
            connection = await db.connection()
            await connection.execute(statement, params)

    async def _activity_loop(self) -> None:
        while True:
            await asyncio.sleep(ACTIVITY_FLUSH_INTERVAL)
            try:
                await self.flush_activity()
            except Exception:
                log.exception("writing session activity failed")

    async def _idle_loop(self) -> None:
        while True:
            await asyncio.sleep(IDLE_CHECK_INTERVAL)
            try:
                await self.flush_activity()
                await self._record_busy_sessions()
                await self._end_idle_sessions()
            except Exception:
                log.exception("the idle check failed")

    async def _record_busy_sessions(self) -> None:
        """Writes down that sessions with open streams here are in use.

        The in-process count only tells this server; other servers on the same database
        judge idleness by ``last_access`` alone.
        """
        busy = [sid for sid, active in self._active.items() if active.busy > 0]
        if busy:
            async with self.db() as db, db.begin():
                await db.execute(
                    sa.update(SessionRow)
                    .where(SessionRow.id.in_(busy))
                    .values(last_access=utcnow())
                )

    async def _end_idle_sessions(self) -> None:
        now = utcnow()
        async with self.db() as db:
            rows = (
                await db.execute(
                    sa.select(SessionRow, KeyPairResourcePolicy)
                    .join_from(SessionRow, KeyPair, KeyPair.access_key == SessionRow.access_key)
                    .join(
                        KeyPairResourcePolicy, KeyPairResourcePolicy.name == KeyPair.resource_policy
                    )
                    .where(
                        SessionRow.status == "RUNNING",
                        SessionRow.type.not_in(("batch", "inference")),
                    )
                )
            ).tuples()
            candidates = list(rows)
        for row, policy in candidates:
            timeout = (
                float(policy.idle_timeout)
                if policy.idle_timeout >= 0
                else self.default_idle_timeout
            )
            active = self._active.get(row.id)
            if timeout <= 0 or (active is not None and active.busy > 0):
                continue
            if now - row.last_access > timedelta(seconds=timeout):
                log.info("ending idle session", extra={"session": str(row.id)})
                await self._destroy_row(row.id, forced=False, reason="idle-timeout")
            lifetime = policy.max_session_lifetime
            if (
                lifetime > 0
                and row.scheduled_at
                and now - row.scheduled_at > timedelta(seconds=lifetime)
            ):
                await self._destroy_row(row.id, forced=False, reason="idle-session-lifetime")

    async def count_active(self, access_key: str | None = None) -> int:
        async with self.db() as db:
            query = (
                sa.select(sa.func.count())
                .select_from(SessionRow)
                .where(SessionRow.status.not_in(TERMINAL_STATUSES))
            )
            if access_key is not None:
                query = query.where(SessionRow.access_key == access_key)
            return int((await db.execute(query)).scalar_one())


# The statements every session start runs, built once: building a statement and its cache key
# anew on each call cost more than running it (a millisecond for the folders a session mounts,
# services/mounts.py).

#: A session's row, locked for a status change (where the database locks rows).
_FOR_UPDATE = sa.select(SessionRow).where(SessionRow.id == sa.bindparam("id")).with_for_update()
#: An UPDATE whose SET clause is the columns given with each execution (``_change_status``).
_UPDATE = sa.update(cast(sa.Table, SessionRow.__table__)).where(
    SessionRow.id == sa.bindparam("row_id")
)
_LIVE_BY_NAME = sa.select(SessionRow).where(
    SessionRow.access_key == sa.bindparam("access_key"),
    SessionRow.name == sa.bindparam("name"),
    SessionRow.status.not_in(TERMINAL_STATUSES),
)
#: Only what scheduling needs of the pending sessions: whole rows would decode every JSON
#: column of each.
_PENDING = (
    sa.select(
        SessionRow.id,
        SessionRow.access_key,
        SessionRow.requested_slots,
        SessionRow.starts_at,
    )
    .where(SessionRow.status == "PENDING")
    .order_by(SessionRow.priority.desc(), SessionRow.created_at)
)
_SLOTS_TEXT = sa.cast(SessionRow.occupying_slots, sa.Text)
#: What the others occupy, grouped by the slots' JSON text: sessions mostly ask for the same
#: few shapes, so this reads a handful of rows however many sessions run.
_OCCUPYING = (
    sa.select(SessionRow.access_key, _SLOTS_TEXT, sa.func.count())
    .where(SessionRow.status.not_in((*TERMINAL_STATUSES, "PENDING")))
    .group_by(SessionRow.access_key, _SLOTS_TEXT)
)
_POLICIES = sa.select(KeyPairResourcePolicy)
_KEY_POLICIES = sa.select(KeyPair.access_key, KeyPair.resource_policy).where(
    KeyPair.access_key.in_(sa.bindparam("access_keys", expanding=True))
)


@dataclass
class _SchedulingState:
    """What a round of scheduling reads: the pending sessions, what the others occupy, and
    the resource policies that apply."""

    pending: list[Any]
    occupying: list[Any]
    policies: dict[str, KeyPairResourcePolicy]
    key_policies: dict[str, str]

    def usage(self) -> dict[str, KeypairUsage]:
        """What each keypair's sessions hold."""
        usage: dict[str, KeypairUsage] = {}
        for access_key, slots_json, count in self.occupying:
            slots = resources.scale(resources.from_json(json.loads(slots_json)), count)
            key_usage = usage.setdefault(access_key, KeypairUsage())
            key_usage.sessions += count
            key_usage.occupied = resources.add(key_usage.occupied, slots)
        return usage

    def candidates(self, now: datetime) -> list[Candidate]:
        """The pending sessions that may start now, in the order they wait."""
        return [
            Candidate(
                str(row.id),
                row.access_key,
                resources.from_json(row.requested_slots),
                _limits(self.policies.get(self.key_policies.get(row.access_key, "default"))),
            )
            for row in self.pending
            if row.starts_at is None or row.starts_at <= now
        ]

    def requested(self, session_id: uuid.UUID) -> dict[str, Any]:
        return next(row.requested_slots for row in self.pending if row.id == session_id)


def _scheduling_state(db: Session) -> _SchedulingState:
    pending = list(db.execute(_PENDING).all())
    if not pending:
        return _SchedulingState([], [], {}, {})
    occupying = list(db.execute(_OCCUPYING).all())
    policies = {p.name: p for p in db.execute(_POLICIES).scalars()}
    access_keys = sorted({row.access_key for row in pending})
    key_rows = db.execute(_KEY_POLICIES, {"access_keys": access_keys})
    return _SchedulingState(pending, occupying, policies, dict(key_rows.tuples().all()))


def _change_status(
    db: Session,
    session_id: uuid.UUID,
    status: str,
    info: str | None,
    expect: Sequence[str] | None,
    via: Sequence[str],
    values: dict[str, Any],
) -> SessionRow | None:
    """Moves a session to ``status`` in ``db``'s transaction (see ``_transition``); None
    when it is gone or not in one of the ``expect``ed statuses.

    The row is read locked, then written with one UPDATE of the changed columns and returned
    detached with them applied: the ORM's unit of work (change tracking, flush) was a fifth
    of each of the four transitions every session makes (``docs/decisions.md``).
    """
    row = db.execute(_FOR_UPDATE, {"id": session_id}).scalar_one_or_none()
    if row is None or (expect is not None and row.status not in expect):
        return None
    db.expunge(row)
    now = utcnow()
    changes: dict[str, Any] = {
        "status": status,
        "status_info": info,
        "status_changed": now,
        "status_history": [
            *row.status_history,
            *([passed, now.isoformat()] for passed in (*via, status)),
        ],
    }
    if status in TERMINAL_STATUSES:
        changes["terminated_at"] = now
        changes["occupying_slots"] = {}
    changes.update(values)
    db.execute(_UPDATE, {**changes, "row_id": session_id})
    for key, value in changes.items():
        setattr(row, key, value)
    return row


def _note_waiting(db: Session, session_id: uuid.UUID, info: str) -> None:
    """Why a pending session still waits, where the reason is new."""
    row = db.get(SessionRow, session_id)
    if row is not None and row.status == "PENDING" and row.status_info != info:
        row.status_info = info


def _looks_like_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _mount_json(mount: MountSpec) -> dict[str, Any]:
    return {
        "name": mount.name,
        "host_path": mount.host_path,
        "kernel_path": mount.kernel_path,
        "read_only": mount.read_only,
    }


def _limits(policy: KeyPairResourcePolicy | None) -> KeypairLimits:
    if policy is None:
        return KeypairLimits(max_concurrent_sessions=30, total_resource_slots={})
    return KeypairLimits(
        max_concurrent_sessions=policy.max_concurrent_sessions,
        total_resource_slots=resources.from_json(policy.total_resource_slots),
        unlisted_unlimited=policy.default_for_unspecified == "UNLIMITED",
    )
