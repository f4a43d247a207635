"""Model services: replicas of a model server behind one endpoint (runtime-semantics.md s.4).

An endpoint wants N replicas.  Each replica (a *route*) is an inference session that mounts
the model folder and starts the model's ``start_command``; it joins the rotation once its
health check passes and leaves it when checks fail, and the reconciler replaces it to keep N.
Scaling down takes replicas out of the rotation first and waits for their requests to finish.

The ingress is a circuit on the app proxy: requests carry a JWT (``Authorization: BackendAI``
or ``Bearer``) unless the endpoint is public, and go to a healthy replica picked at random in
proportion to the routes' traffic ratios.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portside import durations, modeldef
from portside.agent.base import AgentError, MountSpec
from portside.appproxy.circuits import Circuit, CircuitManager, Route, problem
from portside.db.models import EndpointRow, EndpointTokenRow, RouteRow, SessionRow
from portside.db.repositories.identity import Principal
from portside.errors import (
    Conflict,
    InsufficientPrivilege,
    InvalidAPIParameters,
    ObjectNotFound,
)

from . import tokens
from .apps import AppService
from .cluster import MODEL_SERVICES_LOCK, Leadership
from .sessions import SessionRequest, SessionService
from .vfolders import VFolderService

log = logging.getLogger("portside.model_services")

SERVICE_TOKEN = "service-token"
NAME_RE = re.compile(r"^(?=.{4,24}$)\w[\w-]*\w$")
RECONCILE_INTERVAL = 0.5
#: How long creating a service waits for its first replica to serve.
CREATE_WAIT = 30.0
#: How long a replica taken out of the rotation may finish its requests.
DRAIN_TIMEOUT = 30.0
LIVE_ROUTES = ("PROVISIONING", "HEALTHY", "UNHEALTHY", "DRAINING")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class ServiceRequest:
    name: str | None
    image: str
    model: str
    replicas: int
    resources: dict[str, Any] = field(default_factory=dict)
    resource_opts: dict[str, Any] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=dict)
    open_to_public: bool = False
    model_mount_destination: str = "/models"
    model_definition_path: str | None = None
    runtime_variant: str = "custom"
    group: str = "default"
    domain: str = "default"
    owner_access_key: str | None = None


@dataclass
class ReplicaState:
    """What the proxy and the reconciler know about one replica between database writes."""

    route_id: uuid.UUID
    session_id: uuid.UUID | None
    status: str
    traffic_ratio: float
    kernel_id: str | None = None
    app_started_at: float | None = None
    next_check: float = 0.0
    failures: int = 0
    in_flight: int = 0
    drain_started: float | None = None


@dataclass
class EndpointState:
    row: EndpointRow
    definition: modeldef.ModelDefinition
    replicas: dict[uuid.UUID, ReplicaState] = field(default_factory=dict)
    circuit: Circuit | None = None

    @property
    def model(self) -> modeldef.ModelSpec:
        return self.definition.main


def pick(replicas: list[ReplicaState], rng: random.Random) -> ReplicaState | None:
    """A healthy replica, chosen with probability proportional to its traffic ratio."""
    weighted = [r for r in replicas if r.traffic_ratio > 0]
    if not weighted:
        return None
    return rng.choices(weighted, weights=[r.traffic_ratio for r in weighted])[0]


async def probe(endpoint: dict[str, Any], path: str, expected: int, timeout: float) -> bool:
    """One HTTP health check of a replica, through the same connection path as the proxy."""
    from portside.appproxy.connect import ConnectError, open_socket

    try:
        sock = await asyncio.wait_for(open_socket(endpoint), timeout)
        reader, writer = await asyncio.open_connection(sock=sock)
    except (ConnectError, OSError, TimeoutError):
        return False
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{endpoint['port']}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout)
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
    parts = status_line.split()
    return len(parts) >= 2 and parts[1] == str(expected).encode()


class ModelServiceManager:
    def __init__(
        self,
        sessions: SessionService,
        apps: AppService,
        vfolders: VFolderService,
        circuits: CircuitManager,
        leadership: Leadership | None = None,
    ) -> None:
        self.sessions = sessions
        #: Only the leading server starts, checks and replaces replicas; the others follow
        #: the database (see ``_sync``).
        self.leadership = leadership or Leadership(None, MODEL_SERVICES_LOCK)
        self.apps = apps
        self.agent = apps.agent
        self.vfolders = vfolders
        self.circuits = circuits
        self.db = sessions.db
        self.endpoints: dict[uuid.UUID, EndpointState] = {}
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._rng = random.Random()
        self._tokens = tokens.Verified(SERVICE_TOKEN)

    # Lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self._sync(adopt=True)
        self._task = asyncio.create_task(self._reconcile_loop(), name="model-services")

    async def _sync(self, *, adopt: bool) -> None:
        """Brings this server's view of the services up to the database's.

        Endpoint rows always come from the database (another server may have created, scaled
        or deleted one).  Replicas come from it too unless this server leads (then its own
        view is the truth it writes) or has just become the leader (``adopt``: it takes the
        replicas over and re-checks their health before they serve).
        """
        rows, routes, kernels = await self.db.run(_services_state)
        live = {row.id for row in rows}
        gone = {e for e in self.endpoints if e not in live}
        for endpoint_id in gone:
            self.endpoints.pop(endpoint_id, None)
        if gone:
            await self.circuits.close_where(lambda key: key[0] == "service" and key[1] in gone)
        leading = self.leadership.leading and not adopt
        for row in rows:
            state = self.endpoints.get(row.id)
            if state is None:
                definition = modeldef.ModelDefinition.model_validate(row.model_definition)
                state = self.endpoints[row.id] = EndpointState(row, definition)
                await self._open_ingress(state)
            else:
                state.row = row
            if leading:
                continue
            previous = state.replicas
            state.replicas = {}
            for route in routes:
                if route.endpoint_id != row.id:
                    continue
                replica = previous.get(route.id) or ReplicaState(
                    route.id, route.session_id, route.status, route.traffic_ratio
                )
                replica.session_id = route.session_id
                replica.traffic_ratio = route.traffic_ratio
                replica.status = "PROVISIONING" if adopt else route.status
                kernel = kernels.get(route.session_id) if route.session_id else None
                replica.kernel_id = str(kernel) if kernel else None
                if adopt:
                    # The model server may already run; a check, not a restart, tells.
                    replica.app_started_at = time.monotonic() if replica.kernel_id else None
                state.replicas[route.id] = replica

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.leadership.close()

    # Ingress -----------------------------------------------------------------------------

    async def _open_ingress(self, state: EndpointState) -> None:
        endpoint_id = state.row.id

        async def gate(circuit: Circuit, request: web.Request) -> web.StreamResponse | None:
            current = self.endpoints.get(endpoint_id)
            if current is None:
                return problem(404, "Not Found", "the service has been deleted")
            if current.row.open_to_public:
                return None
            return self._check_token(request, endpoint_id)

        async def route(tried: set[str]) -> Route | None:
            current = self.endpoints.get(endpoint_id)
            if current is None:
                return None
            healthy = [
                r
                for r in current.replicas.values()
                if r.status == "HEALTHY" and r.kernel_id and str(r.route_id) not in tried
            ]
            chosen = pick(healthy, self._rng)
            if chosen is None or chosen.session_id is None or chosen.kernel_id is None:
                return None
            chosen.in_flight += 1

            def release(replica: ReplicaState = chosen) -> None:
                replica.in_flight -= 1

            def broken(replica: ReplicaState = chosen) -> None:
                # Out of the rotation now; the next health checks decide its fate.
                if replica.status == "HEALTHY":
                    replica.status = "UNHEALTHY"
                self._wakeup.set()

            endpoint = self.agent.app_endpoint(chosen.kernel_id, current.model.service.port)
            return Route(chosen.session_id, endpoint, str(chosen.route_id), release, broken)

        async def activity(session_id: uuid.UUID, delta: int) -> None:
            return None

        state.circuit = await self.circuits.get_or_create(
            ("service", endpoint_id), route, gate, activity, port=state.row.ingress_port or 0
        )
        if state.row.ingress_port != state.circuit.port:
            async with self.db() as db, db.begin():
                row = await db.get(EndpointRow, endpoint_id)
                if row is not None:
                    row.ingress_port = state.circuit.port
            state.row.ingress_port = state.circuit.port

    def _check_token(self, request: web.Request, endpoint_id: uuid.UUID) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            return problem(
                401, "Unauthorized", "this service needs a token: Authorization: BackendAI <token>"
            )
        if scheme not in ("BackendAI", "Bearer") or not token.strip():
            return problem(401, "Unauthorized", "use Authorization: BackendAI <token> or Bearer")
        try:
            claims = self._tokens.verify(self.apps.secret, token.strip())
        except tokens.TokenError as e:
            return problem(401, "Unauthorized", str(e))
        if claims.get("eid") != str(endpoint_id):
            return problem(401, "Unauthorized", "the token belongs to another service")
        return None

    def url(self, state: EndpointState) -> str | None:
        healthy = any(r.status == "HEALTHY" for r in state.replicas.values())
        if state.circuit is None or not healthy:
            return None
        return state.circuit.base_url

    # Use cases ---------------------------------------------------------------------------

    async def _mine(self, principal: Principal, ref: str) -> EndpointState:
        states = []
        for state in self.endpoints.values():
            if str(state.row.id) == ref or state.row.id.hex == ref or state.row.name == ref:
                states.append(state)
        for state in states:
            if state.row.access_key == principal.access_key or principal.is_admin:
                return state
        raise ObjectNotFound(f"there is no service {ref!r}", object_name="service")

    async def create(self, principal: Principal, req: ServiceRequest) -> dict[str, Any]:
        owner = principal
        if req.owner_access_key and req.owner_access_key != principal.access_key:
            raise InsufficientPrivilege("services are created for their own keypair")
        name = req.name or f"svc-{uuid.uuid4().hex[:8]}"
        if not NAME_RE.match(name):
            raise InvalidAPIParameters(
                f"service name {name!r} must be 4 to 24 letters, digits, '-' or '_', "
                "starting and ending with a letter or digit"
            )
        if req.replicas < 0:
            raise InvalidAPIParameters("replicas cannot be negative")
        image = self.apps.images.resolve(req.image)
        self.sessions.requested_slots(image, req.resources)
        folder = await self.vfolders.get(owner, req.model)
        definition = await self._read_definition(folder.row.id, req.model_definition_path)
        async with self.db() as db, db.begin():
            from portside.db.repositories import identity

            group = await db.run_sync(identity.get_group, req.domain, req.group)
            row = EndpointRow(
                name=name,
                access_key=owner.access_key,
                user_id=owner.user_id,
                domain_name=req.domain,
                group_id=group.id,
                image=image.name,
                model_id=folder.row.id,
                model_mount_destination=req.model_mount_destination,
                model_definition_path=req.model_definition_path,
                model_definition=definition.model_dump(mode="json", by_alias=False),
                runtime_variant=req.runtime_variant,
                replicas=req.replicas,
                resources={str(k): str(v) for k, v in req.resources.items()},
                resource_opts=req.resource_opts,
                environ=req.environ,
                open_to_public=req.open_to_public,
                status="PROVISIONING",
            )
            db.add(row)
            try:
                await db.flush()
            except IntegrityError:
                raise Conflict(f"you already have a service named {name!r}") from None
        state = EndpointState(row, definition)
        self.endpoints[row.id] = state
        await self._open_ingress(state)
        self._wakeup.set()
        await self._wait_until_serving(state, CREATE_WAIT)
        return self.describe(state)

    async def _wait_until_serving(self, state: EndpointState, timeout: float) -> None:
        """Gives the first replica a chance to come up, so the reply can carry a live URL.

        Models that load for longer leave ``url`` empty in the reply; it appears in
        ``info()`` once a replica passes its health check.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while state.row.replicas > 0 and loop.time() < deadline:
            if any(r.status == "HEALTHY" for r in state.replicas.values()):
                return
            await asyncio.sleep(0.1)

    async def _read_definition(
        self, folder_id: uuid.UUID, definition_path: str | None
    ) -> modeldef.ModelDefinition:
        names = [definition_path] if definition_path else list(modeldef.CANDIDATES)
        for name in names:
            try:
                fd, _ = await asyncio.to_thread(self.vfolders.volume.open_file, folder_id, name)
            except ObjectNotFound:
                continue
            with open(fd, "rb", closefd=True) as f:
                text = f.read(1024 * 1024).decode("utf-8", "replace")
            return modeldef.parse(text, name)
        raise InvalidAPIParameters(
            f"the model folder has no {' or '.join(names)}; add one that says how to start "
            "the model server (models[0].service.start_command and port)"
        )

    def describe(self, state: EndpointState) -> dict[str, Any]:
        row = state.row
        url = self.url(state)
        active = [r for r in state.replicas.values() if r.status == "HEALTHY"]
        return {
            "endpoint_id": str(row.id),
            "model_id": str(row.model_id),
            "extra_mounts": [],
            "name": row.name,
            "replicas": row.replicas,
            "desired_session_count": row.replicas,
            "model_definition_path": row.model_definition_path,
            "active_routes": [
                {
                    "route_id": str(r.route_id),
                    "session_id": str(r.session_id),
                    "traffic_ratio": r.traffic_ratio,
                }
                for r in active
            ],
            "service_endpoint": url,
            # The examples page reads "url"; today's API calls it service_endpoint.
            "url": url,
            "is_public": row.open_to_public,
            "runtime_variant": row.runtime_variant,
            "status": row.status,
            "routes": [
                {
                    "route_id": str(r.route_id),
                    "session_id": str(r.session_id) if r.session_id else None,
                    "status": r.status,
                    "traffic_ratio": r.traffic_ratio,
                }
                for r in state.replicas.values()
            ],
        }

    async def info(self, principal: Principal, ref: str) -> dict[str, Any]:
        return self.describe(await self._mine(principal, ref))

    async def list_services(self, principal: Principal, name: str | None) -> list[dict[str, Any]]:
        result = []
        for state in self.endpoints.values():
            if not (principal.is_admin or state.row.access_key == principal.access_key):
                continue
            if name and state.row.name != name:
                continue
            info = self.describe(state)
            result.append(
                {
                    "id": info["endpoint_id"],
                    "name": info["name"],
                    "replicas": info["replicas"],
                    "desired_session_count": info["desired_session_count"],
                    "active_route_count": len(info["active_routes"]),
                    "service_endpoint": info["service_endpoint"],
                    "is_public": info["is_public"],
                }
            )
        return result

    def visible(self, principal: Principal) -> list[EndpointState]:
        return [
            s
            for s in self.endpoints.values()
            if principal.is_admin or s.row.access_key == principal.access_key
        ]

    async def scale(self, principal: Principal, ref: str, to: int) -> dict[str, int]:
        if to < 0:
            raise InvalidAPIParameters("a service cannot have fewer than 0 replicas")
        state = await self._mine(principal, ref)
        await self._update(state, replicas=to)
        self._wakeup.set()
        current = sum(1 for r in state.replicas.values() if r.status in LIVE_ROUTES)
        return {"current_route_count": current, "target_count": to}

    async def delete(self, principal: Principal, ref: str) -> None:
        state = await self._mine(principal, ref)
        await self._update(state, status="DESTROYING", replicas=0)
        self._wakeup.set()

    async def sync(self, principal: Principal, ref: str) -> None:
        await self._mine(principal, ref)
        self._wakeup.set()

    async def set_traffic_ratio(
        self, principal: Principal, ref: str, route_id: str, ratio: float
    ) -> None:
        if ratio < 0:
            raise InvalidAPIParameters("traffic_ratio cannot be negative")
        state = await self._mine(principal, ref)
        replica = self._replica(state, route_id)
        replica.traffic_ratio = ratio
        async with self.db() as db, db.begin():
            await db.execute(
                sa.update(RouteRow)
                .where(RouteRow.id == replica.route_id)
                .values(traffic_ratio=ratio)
            )

    async def remove_route(self, principal: Principal, ref: str, route_id: str) -> None:
        state = await self._mine(principal, ref)
        replica = self._replica(state, route_id)
        await self._update(state, replicas=max(0, state.row.replicas - 1))
        await self._set_route(replica, "DRAINING")
        self._wakeup.set()

    def _replica(self, state: EndpointState, route_id: str) -> ReplicaState:
        for replica in state.replicas.values():
            if str(replica.route_id) == route_id or replica.route_id.hex == route_id:
                return replica
        raise ObjectNotFound(f"the service has no route {route_id!r}", object_name="route")

    async def generate_token(
        self,
        principal: Principal,
        ref: str,
        *,
        duration: float | str | None,
        valid_until: float | None,
    ) -> dict[str, str]:
        state = await self._mine(principal, ref)
        now = utcnow()
        if valid_until is not None:
            expires = datetime.fromtimestamp(float(valid_until), UTC)
        elif duration is not None:
            expires = durations.after(now, duration)
        else:
            raise InvalidAPIParameters('give duration (e.g. "3600s") or valid_until (unix time)')
        if expires <= now:
            raise InvalidAPIParameters("the token would already have expired")
        token = tokens.issue(
            self.apps.secret,
            SERVICE_TOKEN,
            {"eid": str(state.row.id), "uid": str(principal.user_id)},
            expires.timestamp(),
        )
        async with self.db() as db, db.begin():
            db.add(
                EndpointTokenRow(
                    endpoint_id=state.row.id,
                    user_id=principal.user_id,
                    token=token,
                    expires_at=expires,
                )
            )
        return {"token": token}

    async def _update(self, state: EndpointState, **values: Any) -> None:
        async with self.db() as db, db.begin():
            row = await db.get(EndpointRow, state.row.id)
            if row is None:
                return
            for key, value in values.items():
                setattr(row, key, value)
        for key, value in values.items():
            setattr(state.row, key, value)

    async def _set_route(self, replica: ReplicaState, status: str, info: str | None = None) -> None:
        replica.status = status
        if status == "DRAINING":
            replica.drain_started = time.monotonic()
        async with self.db() as db, db.begin():
            await db.execute(
                sa.update(RouteRow)
                .where(RouteRow.id == replica.route_id)
                .values(status=status, status_info=info)
            )

    # Reconciling -------------------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), RECONCILE_INTERVAL)
            self._wakeup.clear()
            try:
                was_leading = self.leadership.leading
                leading = await self.leadership.try_acquire()
                await self._sync(adopt=leading and not was_leading)
            except Exception:
                log.exception("reading the services from the database failed")
                continue
            if not leading:
                continue
            for state in list(self.endpoints.values()):
                try:
                    await self._reconcile(state)
                except Exception:
                    log.exception("reconciling service %s failed", state.row.id)

    async def _reconcile(self, state: EndpointState) -> None:
        now = time.monotonic()
        for replica in list(state.replicas.values()):
            await self._advance(state, replica, now)
        live = [r for r in state.replicas.values() if r.status in ("PROVISIONING", "HEALTHY")]
        missing = state.row.replicas - len(live)
        for _ in range(missing):
            await self._add_replica(state)
        if missing < 0:
            # Scale down: replicas not yet serving go first, then the newest.
            surplus = sorted(live, key=lambda r: (r.status == "HEALTHY", -r.next_check))
            for replica in surplus[:-missing]:
                await self._set_route(replica, "DRAINING", "scaled down")
        await self._refresh_status(state)

    async def _refresh_status(self, state: EndpointState) -> None:
        if state.row.status == "DESTROYING":
            if not state.replicas:
                await self._update(state, status="DESTROYED", destroyed_at=utcnow())
                self.endpoints.pop(state.row.id, None)
                await self.circuits.close_where(lambda key: key == ("service", state.row.id))
            return
        healthy = sum(1 for r in state.replicas.values() if r.status == "HEALTHY")
        status = (
            "HEALTHY"
            if healthy >= state.row.replicas
            else "DEGRADED"
            if healthy
            else "PROVISIONING"
        )
        if status != state.row.status:
            await self._update(state, status=status)

    async def _add_replica(self, state: EndpointState) -> None:
        row = state.row
        folder_path = self.vfolders.volume.folder_path(row.model_id)
        model = state.model
        async with self.db() as db, db.begin():
            route = RouteRow(endpoint_id=row.id, status="PROVISIONING", traffic_ratio=1.0)
            db.add(route)
            await db.flush()
            route_id = route.id
        replica = ReplicaState(route_id, None, "PROVISIONING", 1.0)
        replica.next_check = time.monotonic()
        state.replicas[route_id] = replica
        principal = await self._owner(row)
        request = SessionRequest(
            image=row.image,
            name=f"{row.name}-{route_id.hex[:6]}",
            type="inference",
            group=await self._group_name(row),
            domain=row.domain_name,
            resources=dict(row.resources),
            resource_opts=dict(row.resource_opts),
            environ={
                **{str(k): str(v) for k, v in row.environ.items()},
                "BACKEND_MODEL_NAME": model.name,
                "BACKEND_MODEL_PATH": model.model_path,
            },
            mounts=[
                MountSpec(
                    f"model:{row.model_id.hex}", str(folder_path), row.model_mount_destination, True
                )
            ],
            enqueue_only=True,
        )
        try:
            created = await self.sessions.create(principal, request)
        except Exception as e:
            log.warning("a replica of %s could not be created: %s", row.name, e)
            await self._set_route(replica, "FAILED", str(e))
            state.replicas.pop(route_id, None)
            return
        replica.session_id = uuid.UUID(created["sessionId"])
        async with self.db() as db, db.begin():
            await db.execute(
                sa.update(RouteRow)
                .where(RouteRow.id == route_id)
                .values(session_id=replica.session_id)
            )

    async def _owner(self, row: EndpointRow) -> Principal:
        from portside.db.repositories import identity

        async with self.db() as db:
            key = await identity.get_active_key(db, row.access_key)
        if key is None:
            raise InsufficientPrivilege("the service owner's keypair is no longer active")
        return key.principal

    async def _group_name(self, row: EndpointRow) -> str:
        from portside.db.models import Group

        async with self.db() as db:
            group = await db.get(Group, row.group_id)
        return group.name if group is not None else "default"

    async def _session_row(self, session_id: uuid.UUID | None) -> SessionRow | None:
        if session_id is None:
            return None
        async with self.db() as db:
            row: SessionRow | None = await db.get(SessionRow, session_id)
            return row

    async def _advance(self, state: EndpointState, replica: ReplicaState, now: float) -> None:
        """Moves one replica along: starting, checking health, draining, ending."""
        session = await self._session_row(replica.session_id)
        if replica.status in ("PROVISIONING", "HEALTHY", "UNHEALTHY") and (
            session is not None and session.status in ("ERROR", "TERMINATED", "CANCELLED")
        ):
            reason = session.status_info or session.status
            await self._end_replica(state, replica, "FAILED", f"the session ended: {reason}")
            return
        if replica.status == "DRAINING":
            drained = replica.in_flight <= 0
            overdue = replica.drain_started is not None and (
                now - replica.drain_started > DRAIN_TIMEOUT
            )
            if drained or overdue:
                await self._end_replica(state, replica, "TERMINATED", "scaled down")
            return
        if replica.status == "UNHEALTHY" and replica.failures == 0:
            # Reported broken by the proxy: confirm with a check right away.
            replica.next_check = 0
        if session is None or session.status != "RUNNING" or session.kernel_id is None:
            return
        await self.sessions.attach(session)
        replica.kernel_id = str(session.kernel_id)
        service = state.model.service
        if replica.app_started_at is None:
            await self._start_model(state, replica, str(session.kernel_id))
            return
        if now < replica.next_check:
            return
        check = service.health_check
        if check is None or not check.enable:
            ok = await probe_port(self.agent.app_endpoint(replica.kernel_id, service.port))
            interval, max_retries = 2.0, 3
        else:
            endpoint = self.agent.app_endpoint(replica.kernel_id, service.port)
            ok = await probe(endpoint, check.path, check.expected_status_code, check.max_wait_time)
            interval, max_retries = check.interval, check.max_retries
        replica.next_check = now + interval
        if ok:
            replica.failures = 0
            if replica.status != "HEALTHY":
                await self._set_route(replica, "HEALTHY")
            return
        if replica.status == "PROVISIONING":
            delay = check.initial_delay if check is not None else 60.0
            if now - replica.app_started_at > delay:
                await self._end_replica(
                    state, replica, "FAILED", "the model server never passed its health check"
                )
            return
        replica.failures += 1
        if replica.status == "HEALTHY":
            await self._set_route(replica, "UNHEALTHY", "failed a health check")
        if replica.failures >= max_retries:
            await self._end_replica(state, replica, "FAILED", "failed its health checks")

    async def _start_model(
        self, state: EndpointState, replica: ReplicaState, kernel_id: str
    ) -> None:
        model = state.model
        try:
            result = await self.agent.start_app(
                kernel_id,
                model.name,
                model.service.port,
                model.service.command_line(model.model_path),
                {},
                wait=False,
            )
        except AgentError as e:
            result = {"status": "failed", "error": str(e)}
        if result.get("status") == "failed":
            await self._end_replica(
                state, replica, "FAILED", f"the model server did not start: {result.get('error')}"
            )
            return
        replica.app_started_at = time.monotonic()
        replica.next_check = replica.app_started_at

    async def _end_replica(
        self, state: EndpointState, replica: ReplicaState, status: str, reason: str
    ) -> None:
        log.info("replica ends", extra={"route": str(replica.route_id), "reason": reason})
        await self._set_route(replica, status, reason)
        state.replicas.pop(replica.route_id, None)
        if replica.session_id is not None:
            with contextlib.suppress(Exception):
                await self.sessions.destroy_by_id(replica.session_id, reason=reason)
        self._wakeup.set()


def _services_state(
    db: Session,
) -> tuple[list[EndpointRow], list[RouteRow], dict[uuid.UUID, uuid.UUID | None]]:
    """The services, their live replicas and the kernels of those that run, as one unit of
    work: the reconciler reads them twice a second even when there is no service at all."""
    rows = list(
        db.execute(sa.select(EndpointRow).where(EndpointRow.status != "DESTROYED")).scalars()
    )
    routes = list(db.execute(sa.select(RouteRow).where(RouteRow.status.in_(LIVE_ROUTES))).scalars())
    session_ids = [r.session_id for r in routes if r.session_id is not None]
    kernels: dict[uuid.UUID, uuid.UUID | None] = {}
    if session_ids:
        running = db.execute(
            sa.select(SessionRow.id, SessionRow.kernel_id).where(
                SessionRow.id.in_(session_ids), SessionRow.status == "RUNNING"
            )
        )
        kernels = {session_id: kernel_id for session_id, kernel_id in running.tuples()}
    return rows, routes, kernels


async def probe_port(endpoint: dict[str, Any]) -> bool:
    from portside.appproxy.connect import ConnectError, open_socket

    try:
        sock = await open_socket(endpoint)
    except ConnectError:
        return False
    sock.close()
    return True
