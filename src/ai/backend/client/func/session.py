"""Compute sessions (wire-protocol.md section 4.2).

A ``ComputeSession`` is a handle: it holds the session's id and/or name plus the owner's access
key, and every call on it is one request.  Paths use the id when it is known, since a name can
be reused after the session ends while an id cannot.
"""

from __future__ import annotations

import json
import platform
import secrets
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ..config import parse_api_version
from ..exceptions import BackendClientError
from ..pagination import PaginatedResult, fetch_paginated_result
from ..request import (
    AttachedFile,
    Request,
    Response,
    SSEContextManager,
    WebSocketContextManager,
    WebSocketResponse,
)
from .admin import run_graphql
from .base import BaseFunction, api_function
from .session_streams import (
    ProgressReporter,
    StreamPty,
    StreamPtyContextManager,
    execute_stream_request,
    extract_multipart_tars,
    open_for_upload,
    resolve_upload_paths,
)

__all__ = ("DEFAULT_LIST_FIELDS", "ComputeSession", "StreamPty")

DEFAULT_LIST_FIELDS = (
    "id",
    "image",
    "type",
    "status",
    "status_info",
    "status_changed",
    "result",
    "abusing_reports",
)

#: ``priority``, ``batch_timeout`` and ``config.attach_network`` are understood from here on.
_PRIORITY_SINCE = parse_api_version("v8.20240915")

#: The examples page and the official client spell some modes differently; the server knows
#: only the canonical ones.
_MODE_ALIASES = {"continued": "continue", "user-input": "input"}

_ARCH_ALIASES = {
    "amd64": "x86_64",
    "x64": "x86_64",
    "x86-64": "x86_64",
    "arm64": "aarch64",
    "armv8": "aarch64",
}


def default_architecture() -> str:
    """This machine's architecture in the spelling image registries use."""
    machine = platform.machine().lower()
    return _ARCH_ALIASES.get(machine, machine)


def _completion_options(opts: Mapping[str, Any] | None) -> dict[str, Any]:
    opts = opts or {}
    return {
        "row": int(opts.get("row", 0)),
        "col": int(opts.get("col", 0)),
        "line": opts.get("line", ""),
        "post": opts.get("post", ""),
    }


class ComputeSession(BaseFunction):
    """A compute session: created with ``get_or_create``, or addressed by name or id."""

    id: uuid.UUID | None
    name: str | None
    owner_access_key: str | None
    created: bool
    status: str | None
    service_ports: list[dict[str, Any]]
    domain: str | None
    group: str | None

    def __init__(
        self,
        name: str | None = None,
        owner_access_key: str | None = None,
        *,
        id: uuid.UUID | None = None,
    ) -> None:
        if name is None and id is None:
            raise ValueError("a compute session needs a name or an id")
        self.id = id
        self.name = name
        self.owner_access_key = owner_access_key
        self.created = False
        self.status = None
        self.service_ports = []
        self.domain = None
        self.group = None

    @classmethod
    def from_session_id(cls, session_id: uuid.UUID) -> ComputeSession:
        return cls(id=session_id)

    def __repr__(self) -> str:
        return f"<ComputeSession id={self.id} name={self.name!r} status={self.status}>"

    @property
    def session_identifier(self) -> str:
        if self.id is not None:
            return str(self.id)
        assert self.name is not None
        return self.name

    def _params(self, **extra: Any) -> dict[str, Any]:
        """Query parameters: ``extra`` (``None`` left out), then the owner's access key, with
        which an administrator acts on another user's session."""
        params = {k: v for k, v in extra.items() if v is not None}
        if self.owner_access_key:
            params["owner_access_key"] = self.owner_access_key
        return params

    def _session_request(
        self, method: str, suffix: str = "", params: Mapping[str, Any] | None = None
    ) -> Request:
        path = f"/session/{self.session_identifier}{suffix}"
        return self._request(method, path, params=dict(params) if params else self._params())

    @classmethod
    @api_function
    async def hello(cls) -> dict[str, Any]:
        async with cls._request("GET", "/").fetch() as resp:
            body: dict[str, Any] = await resp.json()
            return body

    @classmethod
    @api_function
    async def paginated_list(
        cls,
        status: str | None = None,
        access_key: str | None = None,
        *,
        fields: str | Sequence[str] = DEFAULT_LIST_FIELDS,
        page_offset: int = 0,
        page_size: int = 20,
        filter: str | None = None,
        order: str | None = None,
    ) -> PaginatedResult[dict[str, Any]]:
        """One page of sessions; ``status`` is a comma-separated list such as ``"RUNNING"``."""
        return await fetch_paginated_result(
            cls._current_session(),
            "compute_session_list",
            {
                "status": (status, "String"),
                "access_key": (access_key, "String"),
                "filter": (filter, "String"),
                "order": (order, "String"),
            },
            fields,
            page_offset=page_offset,
            page_size=page_size,
        )

    @classmethod
    @api_function
    async def get_or_create(
        cls,
        image: str,
        *,
        name: str | None = None,
        client_token: str | None = None,
        type_: str = "interactive",
        starts_at: str | None = None,
        enqueue_only: bool = False,
        max_wait: int = 0,
        no_reuse: bool = False,
        dependencies: Sequence[str | uuid.UUID] | None = None,
        callback_url: str | None = None,
        mounts: Sequence[str] | None = None,
        mount_map: Mapping[str, str] | None = None,
        mount_ids: Sequence[str | uuid.UUID] | None = None,
        mount_id_map: Mapping[str, str] | None = None,
        mount_options: Mapping[str, Mapping[str, Any]] | None = None,
        envs: Mapping[str, str] | None = None,
        startup_command: str | None = None,
        resources: Mapping[str, Any] | None = None,
        resource_opts: Mapping[str, Any] | None = None,
        cluster_size: int = 1,
        cluster_mode: str = "single-node",
        domain_name: str | None = None,
        group_name: str | None = None,
        bootstrap_script: str | None = None,
        tag: str | None = None,
        architecture: str | None = None,
        scaling_group: str | None = None,
        owner_access_key: str | None = None,
        preopen_ports: Sequence[int] | None = None,
        assign_agent: Sequence[str] | None = None,
        attach_network: str | None = None,
        priority: int | None = None,
        batch_timeout: int | None = None,
    ) -> ComputeSession:
        """Creates a session, or returns the caller's live one of the same name and image.

        ``client_token`` is the examples page's older name for ``name``.  The mounts listed in
        ``BACKEND_VFOLDER_MOUNTS`` are added to ``mounts``.
        """
        if client_token is not None:
            if name is not None and name != client_token:
                raise ValueError("give either name or client_token, not two different names")
            name = client_token
        if name is None:
            name = f"pysdk-{secrets.token_hex(4)}"
        elif not 4 <= len(name) <= 64:
            raise ValueError("Client session token should be 4 to 64 characters long.")
        session = cls._current_session()
        config = session.config
        domain_name = domain_name if domain_name is not None else config.domain
        group_name = group_name if group_name is not None else config.group
        creation_config: dict[str, Any] = {
            "mounts": [*(mounts or ()), *config.vfolder_mounts],
            "mount_ids": [str(m) for m in mount_ids or ()],
            "environ": dict(envs) if envs is not None else None,
            "resources": dict(resources or {}),
            "resource_opts": dict(resource_opts or {}),
            "scalingGroup": scaling_group,
        }
        body: dict[str, Any] = {"tag": tag, "name": name, "config": creation_config}
        if session.api_version >= _PRIORITY_SINCE:
            if batch_timeout is not None:
                body["batch_timeout"] = batch_timeout
            if priority is not None:
                body["priority"] = priority
            creation_config["attach_network"] = attach_network
        body["dependencies"] = [str(d) for d in dependencies] if dependencies is not None else None
        body["callback_url"] = callback_url
        body["architecture"] = architecture or default_architecture()
        body["clusterSize"] = cluster_size
        body["clusterMode"] = cluster_mode
        body["starts_at"] = starts_at
        body["bootstrap_script"] = bootstrap_script
        creation_config["mount_map"] = dict(mount_map or {})
        creation_config["mount_id_map"] = dict(mount_id_map or {})
        creation_config["mount_options"] = {
            folder: {k: v for k, v in options.items() if v is not None}
            for folder, options in (mount_options or {}).items()
        }
        creation_config["preopen_ports"] = None if preopen_ports is None else list(preopen_ports)
        if assign_agent is not None:
            creation_config["agentList"] = list(assign_agent)
        body.update(
            {
                "owner_access_key": owner_access_key,
                "domain": domain_name,
                "group": group_name,
                "type": type_,
                "enqueueOnly": enqueue_only,
                "maxWaitSeconds": max_wait,
                "reuseIfExists": not no_reuse,
                "startupCommand": startup_command,
                "image": image,
            }
        )
        rqst = cls._request("POST", "/session")
        rqst.set_json(body)
        async with rqst.fetch() as resp:
            data = await resp.json()
        try:
            session_id = uuid.UUID(str(data["sessionId"]))
        except (KeyError, TypeError, ValueError) as e:
            raise BackendClientError(f"the server did not return a valid sessionId: {data}") from e
        handle = cls(data.get("sessionName") or name, owner_access_key, id=session_id)
        handle.created = bool(data.get("created", True))
        handle.status = data.get("status", "RUNNING")
        handle.service_ports = list(data.get("servicePorts") or [])
        handle.domain = domain_name
        handle.group = group_name
        return handle

    @api_function
    async def get_info(self) -> dict[str, Any]:
        async with self._session_request("GET").fetch() as resp:
            result: dict[str, Any] = await resp.json()
            return result

    @api_function
    async def destroy(
        self, *, forced: bool = False, recursive: bool = False
    ) -> dict[str, Any] | None:
        """Terminates the session; ``recursive`` also ends the sessions that depend on it.

        Returns the server's statistics when it sends any (200), else ``None`` (204).
        """
        params = self._params(forced="true" if forced else None)
        if recursive:
            params["recursive"] = "true"
        async with self._session_request("DELETE", params=params).fetch() as resp:
            if resp.status == 200:
                result: dict[str, Any] = await resp.json()
                return result
        return None

    @api_function
    async def restart(self) -> None:
        async with self._session_request("PATCH").fetch():
            pass

    @api_function
    async def rename(self, new_id: str) -> None:
        """Renames the session; the new name travels in the query string, the body is empty."""
        async with self._session_request("POST", "/rename", self._params(name=new_id)).fetch():
            pass
        self.name = new_id

    @api_function
    async def interrupt(self) -> None:
        async with self._session_request("POST", "/interrupt").fetch():
            pass

    @api_function
    async def complete(self, code: str, opts: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Completion candidates for ``code``; ``opts`` carries the cursor (row, col, line,
        post)."""
        rqst = self._session_request("POST", "/complete")
        rqst.set_json({"code": code, "options": _completion_options(opts)})
        async with rqst.fetch() as resp:
            result: dict[str, Any] = await resp.json()
            return result

    @api_function
    async def get_logs(self, kernel_id: uuid.UUID | str | None = None) -> dict[str, Any]:
        params = self._params(kernel_id=str(kernel_id) if kernel_id is not None else None)
        async with self._session_request("GET", "/logs", params).fetch() as resp:
            result: dict[str, Any] = await resp.json()
            return result

    @api_function
    async def get_status_history(self) -> dict[str, Any]:
        async with self._session_request("GET", "/status-history").fetch() as resp:
            result: dict[str, Any] = await resp.json()
            return result

    @api_function
    async def get_dependency_graph(self) -> dict[str, Any]:
        async with self._session_request("GET", "/dependency-graph").fetch() as resp:
            result: dict[str, Any] = await resp.json()
            return result

    @api_function
    async def get_abusing_report(self) -> dict[str, Any]:
        async with self._session_request("GET", "/abusing-report").fetch() as resp:
            result: dict[str, Any] = await resp.json()
            return result

    @api_function
    async def commit(self) -> dict[str, Any]:
        async with self._session_request("POST", "/commit").fetch() as resp:
            result: dict[str, Any] = await resp.json()
            return result

    @api_function
    async def export_to_image(self, new_image_name: str) -> dict[str, Any]:
        params = self._params(image_name=new_image_name)
        async with self._session_request("POST", "/imagify", params).fetch() as resp:
            result: dict[str, Any] = await resp.json()
            return result

    @api_function
    async def execute(
        self,
        run_id: str | None = None,
        code: str | None = None,
        mode: str = "query",
        opts: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Runs one step of a run loop and returns its result object.

        Call again with ``mode="continue"`` (or the page's ``"continued"``) and the returned
        ``runId`` until the status is ``finished``; on ``waiting-input`` send the text with
        ``mode="input"``.  ``opts`` holds the batch commands (clean, build, exec) or, for
        ``mode="complete"``, the cursor position.
        """
        mode = _MODE_ALIASES.get(mode, mode)
        opts = opts or {}
        body: dict[str, Any]
        if mode == "complete":
            rqst = self._session_request("POST", "/complete")
            body = {"code": code or "", "options": _completion_options(opts)}
        elif mode in ("query", "continue", "input"):
            if code is None and mode == "query":
                raise ValueError("The code argument must be a valid string even when empty.")
            rqst = self._session_request("POST")
            body = {"mode": mode, "code": code or "", "runId": run_id}
        elif mode == "batch":
            rqst = self._session_request("POST")
            body = {
                "mode": mode,
                "code": code or "",
                "runId": run_id,
                "options": {
                    "clean": opts.get("clean"),
                    "build": opts.get("build"),
                    "buildLog": bool(opts.get("buildLog", False)),
                    "exec": opts.get("exec"),
                },
            }
        else:
            raise BackendClientError(f"Invalid execution mode: {mode}")
        rqst.set_json(body)
        async with rqst.fetch() as resp:
            result: dict[str, Any] = (await resp.json())["result"]
            return result

    @api_function
    async def upload(
        self,
        files: Sequence[str | Path],
        basedir: str | Path | None = None,
        show_progress: bool = False,
    ) -> Response:
        """Uploads files to the session's working directory, keeping their place relative to
        ``basedir`` (default: the current directory); files outside ``basedir`` are refused.

        ``show_progress`` prints a byte counter on stderr.
        """
        named_paths = resolve_upload_paths(files, basedir)
        total = sum(path.stat().st_size for path, _ in named_paths)
        progress = ProgressReporter("Uploading files", total, enabled=show_progress)
        streams: list[IO[bytes]] = []
        try:
            attachments = []
            for path, name in named_paths:
                streams.append(open_for_upload(path, progress))
                attachments.append(AttachedFile(name, streams[-1], "application/octet-stream"))
            rqst = self._session_request("POST", "/upload")
            rqst.attach_files(attachments)
            async with rqst.fetch() as resp:
                return resp
        finally:
            for stream in streams:
                stream.close()
            progress.finish()

    @api_function
    async def download(
        self,
        files: Sequence[str | Path],
        dest: str | Path = ".",
        show_progress: bool = False,
    ) -> dict[str, Any]:
        """Downloads files (paths relative to the session's working directory) into ``dest``.

        The server sends one tar archive per requested path; ``file_names`` lists what they
        held.  ``show_progress`` prints a byte counter on stderr.
        """
        params = self._params(files=[str(f) for f in files])
        async with self._session_request("POST", "/download", params).fetch() as resp:
            progress = ProgressReporter(
                "Downloading files", resp.content_length, enabled=show_progress
            )
            try:
                names = await extract_multipart_tars(resp.raw_response, Path(dest), progress)
            finally:
                progress.finish()
        return {"file_names": names}

    @api_function
    async def list_files(self, path: str | Path = ".") -> dict[str, Any]:
        """The directory listing; its ``files`` value is itself a JSON-encoded string."""
        rqst = self._session_request("GET", "/files")
        rqst.set_json({"path": str(path)})
        async with rqst.fetch() as resp:
            result: dict[str, Any] = await resp.json()
            return result

    @api_function
    async def start_service(
        self,
        app: str,
        *,
        port: int | None = None,
        envs: Mapping[str, Any] | None = None,
        arguments: Mapping[str, Any] | None = None,
        login_session_token: str | None = None,
    ) -> dict[str, Any]:
        """Starts a container app and returns the app proxy's ``token`` and ``wsproxy_addr``."""
        body: dict[str, Any] = {"app": app}
        if port is not None:
            body["port"] = port
        if envs is not None:
            body["envs"] = json.dumps(dict(envs))
        if arguments is not None:
            body["arguments"] = json.dumps(dict(arguments))
        if login_session_token is not None:
            body["login_session_token"] = login_session_token
        rqst = self._session_request("POST", "/start-service")
        rqst.set_json(body)
        async with rqst.fetch() as resp:
            result: dict[str, Any] = await resp.json()
            return result

    @api_function
    async def shutdown_service(self, service_name: str) -> None:
        params = self._params(service_name=service_name)
        async with self._session_request("POST", "/shutdown-service", params).fetch():
            pass

    @api_function
    async def stream_app_info(self) -> list[dict[str, Any]]:
        path = f"/stream/session/{self.session_identifier}/apps"
        async with self._request("GET", path, params=self._params()).fetch() as resp:
            result: list[dict[str, Any]] = await resp.json()
            return result

    @api_function
    async def update(self, name: str | None = None, priority: int | None = None) -> dict[str, Any]:
        """Renames or re-prioritizes the session through GraphQL; needs the session's id."""
        if self.id is None:
            raise ValueError(f"{self!r} must have a session id to be updated")
        query = (
            "mutation($input: ModifyComputeSessionInput!) {"
            " modify_compute_session(input: $input) {"
            " item { name priority } clientMutationId } }"
        )
        inputs: dict[str, Any] = {
            "id": str(self.id),
            "clientMutationId": secrets.token_urlsafe(16),
        }
        if name is not None:
            inputs["name"] = name
        if priority is not None:
            inputs["priority"] = priority
        data = await run_graphql(self._current_session(), query, {"input": inputs})
        if name is not None:
            self.name = name
        result: dict[str, Any] = data["modify_compute_session"]
        return result

    def listen_events(self, scope: str = "*") -> SSEContextManager:
        """The session's lifecycle events (``async with ... as events: async for ev in events``).

        Only in an ``AsyncSession``.  A session known by id is followed by id alone, since an
        id already names one owner's session.
        """
        if self.id is not None:
            params: dict[str, Any] = {"sessionId": str(self.id)}
        else:
            params = {"sessionName": self.name, **self._params()}
        params["scope"] = scope
        return self._request("GET", "/events/session", params=params).connect_events()

    stream_events = listen_events

    def stream_execute(
        self, code: str = "", *, mode: str = "query", opts: Mapping[str, Any] | None = None
    ) -> WebSocketContextManager:
        """Runs ``code`` over a WebSocket that is the run loop itself (no run id needed).

        Only in an ``AsyncSession``.  Results arrive as JSON text frames; answer a
        ``waiting-input`` status with ``send_text(user_input)``.
        """
        first_message = execute_stream_request(code, mode, opts)

        async def send_code(ws: WebSocketResponse) -> None:
            await ws.send_json(first_message)

        path = f"/stream/session/{self.session_identifier}/execute"
        rqst = self._request("GET", path, params=self._params())
        return rqst.connect_websocket(on_enter=send_code)

    def stream_pty(self) -> StreamPtyContextManager:
        """The session's terminal as a ``StreamPty``; only in an ``AsyncSession``."""
        path = f"/stream/session/{self.session_identifier}/pty"
        return StreamPtyContextManager(self._request("GET", path, params=self._params()))
