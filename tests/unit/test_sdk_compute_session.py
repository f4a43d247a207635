"""Wire-format tests of the SDK's ``ComputeSession`` (wire-protocol.md sections 4.2 and 4.4).

The SDK talks to a small recording aiohttp server that keeps what each request carried and
answers with canned bodies shaped like the ones the protocol notes recorded.  The server runs on
its own thread and loop, so a sync ``Session`` (whose calls block) and an ``AsyncSession`` can
both be tested against it.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import io
import json
import tarfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
from aiohttp import web

from ai.backend.client.config import APIConfig
from ai.backend.client.exceptions import BackendClientError
from ai.backend.client.func.session import ComputeSession, StreamPty, default_architecture
from ai.backend.client.pagination import PaginatedResult
from ai.backend.client.session import AsyncSession, BaseSession, Session

SESSION_ID = uuid.UUID("8d6a5d1e-0c3a-4a59-9f41-7d8a3c0f2b11")
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

Handler = Callable[[web.Request, "Recorded"], Any]


@dataclass
class Recorded:
    method: str
    path: str
    query: list[tuple[str, str]]
    content_type: str
    headers: dict[str, str]
    body: bytes = b""
    #: (field name, filename exactly as sent, content) per multipart part
    parts: list[tuple[str, str | None, bytes]] = field(default_factory=list)
    #: frames the client sent over a WebSocket: ("text"|"binary", data)
    frames: list[tuple[str, str | bytes]] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)


class RecordingServer:
    """Records every request and answers from ``overrides`` or the defaults below."""

    def __init__(self) -> None:
        self.records: list[Recorded] = []
        self.overrides: dict[tuple[str, str], Handler] = {}
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def signed(self) -> list[Recorded]:
        """What the SDK sent, without the unsigned version probe of ``Session()``."""
        return [r for r in self.records if "Authorization" in r.headers]

    def last(self) -> Recorded:
        return self.signed()[-1]

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        rec = Recorded(
            method=request.method,
            path=request.path,
            query=list(request.query.items()),
            content_type=request.content_type,
            headers=dict(request.headers),
        )
        self.records.append(rec)
        if request.content_type.startswith("multipart/form-data"):
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                assert isinstance(part, aiohttp.BodyPartReader)
                disposition = part.headers["Content-Disposition"]
                raw_name = None
                for item in disposition.split(";"):
                    key, _, value = item.strip().partition("=")
                    if key == "filename":
                        raw_name = value.strip('"')
                rec.parts.append((part.name or "", raw_name, await part.read()))
        else:
            rec.body = await request.read()
        handler = self.overrides.get((request.method, request.path))
        if handler is None:
            handler = self._default_handler(request)
        result = handler(request, rec)
        if inspect.isawaitable(result):
            result = await result
        assert isinstance(result, web.StreamResponse)
        return result

    def _default_handler(self, request: web.Request) -> Handler:
        path, method = request.path, request.method
        sid = str(SESSION_ID)
        if path == "/":
            return lambda r, rec: web.json_response({"version": "v9.20250722", "manager": "rec"})
        if (method, path) == ("POST", "/session"):
            return _create
        if (method, path) == ("POST", "/admin/gql"):
            return _graphql
        if path == "/events/session":
            return _events
        if path.startswith("/stream/session/"):
            kind = path.rsplit("/", 1)[-1]
            return {"execute": _ws_execute, "pty": _ws_pty, "apps": _apps}[kind]
        if path.startswith("/session/"):
            suffix = path.removeprefix("/session/").partition("/")[2]
            if suffix == "":
                if method == "POST":
                    return _execute
                if method == "DELETE":
                    return lambda r, rec: web.json_response({"stats": {"status": "terminated"}})
                if method == "GET":
                    return lambda r, rec: web.json_response({"status": "RUNNING", "id": sid})
            if suffix == "download":
                return _download
            if suffix == "complete":
                return lambda r, rec: web.json_response({"result": {"suggestions": ["print"]}})
            if suffix in ("files", "logs", "status-history", "dependency-graph", "start-service"):
                return lambda r, rec: web.json_response({"echo": suffix})
            return lambda r, rec: web.Response(status=204)
        return lambda r, rec: web.json_response({"title": "not found"}, status=404)


def _create(request: web.Request, rec: Recorded) -> web.Response:
    body = rec.json()
    return web.json_response(
        {
            "sessionId": str(SESSION_ID),
            "sessionName": body["name"],
            "status": "RUNNING",
            "servicePorts": [{"name": "jupyter", "protocol": "http", "ports": [8081]}],
            "created": True,
        },
        status=201,
    )


def _graphql(request: web.Request, rec: Recorded) -> web.Response:
    query = rec.json()["query"]
    if "compute_session_list" in query:
        items = [{"id": str(SESSION_ID), "image": "python:3.12", "status": "RUNNING"}]
        data: dict[str, Any] = {"compute_session_list": {"items": items, "total_count": 1}}
    elif "images(" in query:
        data = {"images": [{"name": "python", "tag": "3.12"}]}
    else:
        data = {"modify_compute_session": {"item": {"name": "n", "priority": 3}}}
    return web.json_response({"data": data})


def _execute(request: web.Request, rec: Recorded) -> web.Response:
    body = rec.json()
    return web.json_response(
        {
            "result": {
                "runId": body.get("runId") or "run-assigned",
                "status": "finished",
                "exitCode": 0,
                "options": None,
                "files": [],
                "console": [["stdout", "hello world\n"]],
            }
        }
    )


def _apps(request: web.Request, rec: Recorded) -> web.Response:
    return web.json_response([{"name": "ttyd", "protocol": "http", "ports": [7681]}])


def _tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _download(request: web.Request, rec: Recorded) -> web.Response:
    names = request.query.getall("files")
    return _tar_parts([{name: f"content of {name}".encode()} for name in names])


def _tar_parts(archives: list[dict[str, bytes]]) -> web.Response:
    """A download answer as the manager builds it: multipart/mixed, one tar per part."""
    writer = aiohttp.MultipartWriter("mixed")
    for files in archives:
        part = writer.append(_tar_of(files), {"Content-Type": "application/x-tar"})
        part.headers["Content-Encoding"] = "identity"
    return web.Response(body=writer)


async def _events(request: web.Request, rec: Recorded) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    data = json.dumps({"reason": "", "sessionName": "s1", "sessionId": str(SESSION_ID)})
    await response.write(f"event: session_started\ndata: {data}\n\n".encode())
    await response.write(b"event: server_close\ndata: \n\n")
    await response.write_eof()
    return response


async def _ws_execute(request: web.Request, rec: Recorded) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    first = await ws.receive_str()
    rec.frames.append(("text", first))
    await ws.send_json(
        {"status": "waiting-input", "console": [], "options": {"is_password": False}}
    )
    answer = await ws.receive_str()
    rec.frames.append(("text", answer))
    await ws.send_json({"status": "finished", "console": [["stdout", answer]], "exitCode": 0})
    await ws.close()
    return ws


async def _ws_pty(request: web.Request, rec: Recorded) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            continue
        rec.frames.append(("text", msg.data))
        frame = json.loads(msg.data)
        if frame["type"] == "stdin":
            echo = base64.b64decode(frame["chars"]).upper()
            await ws.send_bytes(json.dumps({"type": "ignored"}).encode())
            out = {"type": "out", "data": base64.b64encode(echo).decode()}
            await ws.send_bytes(json.dumps(out).encode())
        elif frame["type"] == "ping":
            await ws.close()
    return ws


@pytest.fixture(scope="module")
def server() -> Iterator[RecordingServer]:
    srv = RecordingServer()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def recorder(server: RecordingServer) -> RecordingServer:
    server.records.clear()
    server.overrides.clear()
    return server


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in ("VFOLDER_MOUNTS", "DOMAIN", "GROUP"):
        monkeypatch.delenv(f"BACKEND_{key}", raising=False)
        monkeypatch.delenv(f"SORNA_{key}", raising=False)
    monkeypatch.chdir(tmp_path)


def make_config(recorder: RecordingServer) -> APIConfig:
    return APIConfig(endpoint=recorder.url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)


class Api:
    """One test body for both flavours: ``await api(call)`` awaits only what needs it."""

    def __init__(self, session: BaseSession) -> None:
        self.session = session

    async def __call__(self, value: Any) -> Any:
        return await value if inspect.isawaitable(value) else value

    @property
    def ComputeSession(self) -> type[ComputeSession]:
        return self.session.ComputeSession


@pytest.fixture(params=["sync", "async"])
async def api(request: pytest.FixtureRequest, recorder: RecordingServer) -> AsyncIterator[Api]:
    config = make_config(recorder)
    if request.param == "sync":
        sync_session = Session(config=config)
        try:
            yield Api(sync_session)
        finally:
            sync_session.close()
    else:
        async with AsyncSession(config=config) as async_session:
            yield Api(async_session)


async def test_get_or_create_sends_the_recorded_body(api: Api, recorder: RecordingServer) -> None:
    sess = await api(
        api.ComputeSession.get_or_create(
            "python:3.12",
            name="mysess",
            type_="interactive",
            enqueue_only=False,
            max_wait=10,
            dependencies=[uuid.UUID(int=3)],
            callback_url="http://cb.example/x",
            mounts=["myfolder"],
            mount_map={"myfolder": "/home/work/data"},
            envs={"FOO": "bar"},
            startup_command="echo hi",
            resources={"cpu": 1, "mem": "1g"},
            resource_opts={"shmem": "64m"},
            bootstrap_script="#!/bin/sh\necho boot",
            tag="t1",
            architecture="x86_64",
            scaling_group="default",
            preopen_ports=[8080],
            assign_agent=["i-agent"],
            priority=10,
        )
    )
    rec = recorder.last()
    assert (rec.method, rec.path, rec.content_type) == ("POST", "/session", "application/json")
    assert rec.json() == {
        "tag": "t1",
        "name": "mysess",
        "config": {
            "mounts": ["myfolder"],
            "mount_ids": [],
            "environ": {"FOO": "bar"},
            "resources": {"cpu": 1, "mem": "1g"},
            "resource_opts": {"shmem": "64m"},
            "scalingGroup": "default",
            "attach_network": None,
            "mount_map": {"myfolder": "/home/work/data"},
            "mount_id_map": {},
            "mount_options": {},
            "preopen_ports": [8080],
            "agentList": ["i-agent"],
        },
        "priority": 10,
        "dependencies": ["00000000-0000-0000-0000-000000000003"],
        "callback_url": "http://cb.example/x",
        "architecture": "x86_64",
        "clusterSize": 1,
        "clusterMode": "single-node",
        "starts_at": None,
        "bootstrap_script": "#!/bin/sh\necho boot",
        "owner_access_key": None,
        "domain": "default",
        "group": "default",
        "type": "interactive",
        "enqueueOnly": False,
        "maxWaitSeconds": 10,
        "reuseIfExists": True,
        "startupCommand": "echo hi",
        "image": "python:3.12",
    }
    assert sess.id == SESSION_ID
    assert (sess.name, sess.created, sess.status) == ("mysess", True, "RUNNING")
    assert sess.service_ports == [{"name": "jupyter", "protocol": "http", "ports": [8081]}]
    assert sess.session_identifier == str(SESSION_ID)
    assert isinstance(sess, ComputeSession)


async def test_get_or_create_client_token_and_env_mounts(
    recorder: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKEND_VFOLDER_MOUNTS", "envfolder1, envfolder2")
    async with AsyncSession(config=make_config(recorder)) as api_session:
        mounts = ["mydata"]
        sess = await api_session.ComputeSession.get_or_create(
            "python:3.9-ubuntu20.04", client_token="mysession", mounts=mounts
        )
    body = recorder.last().json()
    assert body["name"] == "mysession"
    assert body["config"]["mounts"] == ["mydata", "envfolder1", "envfolder2"]
    assert mounts == ["mydata"], "the caller's list must not be extended"
    assert "priority" not in body
    assert "batch_timeout" not in body
    assert "agentList" not in body["config"]
    assert body["architecture"] == default_architecture()
    assert sess.name == "mysession"


def test_get_or_create_names(recorder: RecordingServer) -> None:
    with Session(config=make_config(recorder)) as api_session:
        sess = api_session.ComputeSession.get_or_create("python:3.12")
        assert sess.name is not None
        assert sess.name.startswith("pysdk-")
        assert 4 <= len(sess.name) <= 64
        for bad in ("abc", "x" * 65):
            with pytest.raises(ValueError):
                api_session.ComputeSession.get_or_create("python:3.12", name=bad)
        with pytest.raises(ValueError):
            api_session.ComputeSession.get_or_create("img", name="aaaa", client_token="bbbb")


async def test_execute_bodies(api: Api, recorder: RecordingServer) -> None:
    sess = api.ComputeSession("mysess")
    result = await api(sess.execute(None, "print('hello world')", mode="query"))
    assert result["console"] == [["stdout", "hello world\n"]]
    await api(sess.execute("run1", "", mode="continue"))
    await api(sess.execute("run1", "", mode="continued"))
    await api(sess.execute("run1", None, mode="continued"))
    await api(sess.execute("run1", "Alice", mode="input"))
    await api(sess.execute("run1", "Bob", mode="user-input"))
    await api(sess.execute("run2", "", mode="batch", opts={"build": "", "exec": "python x.py"}))
    records = recorder.signed()
    assert {(r.method, r.path) for r in records} == {("POST", "/session/mysess")}
    assert [r.json() for r in records] == [
        {"mode": "query", "code": "print('hello world')", "runId": None},
        {"mode": "continue", "code": "", "runId": "run1"},
        {"mode": "continue", "code": "", "runId": "run1"},
        {"mode": "continue", "code": "", "runId": "run1"},
        {"mode": "input", "code": "Alice", "runId": "run1"},
        {"mode": "input", "code": "Bob", "runId": "run1"},
        {
            "mode": "batch",
            "code": "",
            "runId": "run2",
            "options": {"clean": None, "build": "", "buildLog": False, "exec": "python x.py"},
        },
    ]


async def test_execute_complete_mode_and_errors(api: Api, recorder: RecordingServer) -> None:
    sess = api.ComputeSession("mysess", "AKOWNER")
    await api(sess.execute(None, "pri", mode="complete", opts={"col": 3}))
    rec = recorder.last()
    assert (rec.method, rec.path, rec.query) == (
        "POST",
        "/session/mysess/complete",
        [("owner_access_key", "AKOWNER")],
    )
    assert rec.json() == {"code": "pri", "options": {"row": 0, "col": 3, "line": "", "post": ""}}
    with pytest.raises(BackendClientError):
        await api(sess.execute(None, "x", mode="nonsense"))
    with pytest.raises(ValueError):
        await api(sess.execute(None, None, mode="query"))


async def test_per_session_calls(api: Api, recorder: RecordingServer) -> None:
    sess = api.ComputeSession(id=SESSION_ID)
    sid = f"/session/{SESSION_ID}"
    assert (await api(sess.get_info()))["status"] == "RUNNING"
    assert await api(sess.destroy()) == {"stats": {"status": "terminated"}}
    await api(sess.destroy(forced=True, recursive=True))
    await api(sess.restart())
    await api(sess.interrupt())
    await api(sess.complete("pri", {"row": 1, "col": 3}))
    await api(sess.get_logs())
    await api(sess.get_logs(kernel_id=uuid.UUID(int=7)))
    await api(sess.get_status_history())
    await api(sess.get_dependency_graph())
    assert (await api(sess.list_files("subdir")))["echo"] == "files"
    service = await api(
        sess.start_service("jupyter", port=8888, envs={"A": "1"}, arguments={"--x": "y"})
    )
    assert service == {"echo": "start-service"}
    await api(sess.shutdown_service("jupyter"))
    assert (await api(sess.stream_app_info()))[0]["name"] == "ttyd"
    seen = [(r.method, r.path, r.query, r.body) for r in recorder.signed()]
    assert seen == [
        ("GET", sid, [], b""),
        ("DELETE", sid, [], b""),
        ("DELETE", sid, [("forced", "true"), ("recursive", "true")], b""),
        ("PATCH", sid, [], b""),
        ("POST", f"{sid}/interrupt", [], b""),
        (
            "POST",
            f"{sid}/complete",
            [],
            b'{"code": "pri", "options": {"row": 1, "col": 3, "line": "", "post": ""}}',
        ),
        ("GET", f"{sid}/logs", [], b""),
        ("GET", f"{sid}/logs", [("kernel_id", str(uuid.UUID(int=7)))], b""),
        ("GET", f"{sid}/status-history", [], b""),
        ("GET", f"{sid}/dependency-graph", [], b""),
        ("GET", f"{sid}/files", [], b'{"path": "subdir"}'),
        (
            "POST",
            f"{sid}/start-service",
            [],
            b'{"app": "jupyter", "port": 8888, "envs": "{\\"A\\": \\"1\\"}", '
            b'"arguments": "{\\"--x\\": \\"y\\"}"}',
        ),
        ("POST", f"{sid}/shutdown-service", [("service_name", "jupyter")], b""),
        ("GET", f"/stream/session/{SESSION_ID}/apps", [], b""),
    ]
    files_rec = recorder.signed()[10]
    assert files_rec.content_type == "application/json"


async def test_destroy_with_204_returns_none(api: Api, recorder: RecordingServer) -> None:
    recorder.overrides[("DELETE", "/session/gone")] = lambda r, rec: web.Response(status=204)
    assert await api(api.ComputeSession("gone").destroy()) is None


async def test_owner_access_key_and_rename(api: Api, recorder: RecordingServer) -> None:
    sess = api.ComputeSession("oldname", "AKOWNER")
    await api(sess.rename("newname"))
    rec = recorder.last()
    assert (rec.method, rec.path) == ("POST", "/session/oldname/rename")
    assert rec.query == [("name", "newname"), ("owner_access_key", "AKOWNER")]
    assert rec.body == b""
    assert sess.name == "newname"
    await api(sess.destroy(forced=True))
    rec = recorder.last()
    assert (rec.method, rec.path) == ("DELETE", "/session/newname")
    assert rec.query == [("forced", "true"), ("owner_access_key", "AKOWNER")]
    await api(sess.get_info())
    assert recorder.last().query == [("owner_access_key", "AKOWNER")]


async def test_download_extracts_multipart_tars(
    api: Api, recorder: RecordingServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "out"
    result = await api(
        api.ComputeSession("mysess").download(["a.txt", "sub/b.txt"], dest=dest, show_progress=True)
    )
    assert "Downloading files: " in capsys.readouterr().err
    rec = recorder.last()
    assert (rec.method, rec.path, rec.body) == ("POST", "/session/mysess/download", b"")
    assert rec.query == [("files", "a.txt"), ("files", "sub/b.txt")]
    assert result == {"file_names": ["a.txt", "sub/b.txt"]}
    assert (dest / "a.txt").read_bytes() == b"content of a.txt"
    assert (dest / "sub" / "b.txt").read_bytes() == b"content of sub/b.txt"


async def test_download_refuses_escaping_archives(
    api: Api, recorder: RecordingServer, tmp_path: Path
) -> None:
    def evil(request: web.Request, rec: Recorded) -> web.Response:
        return _tar_parts([{"../escaped.txt": b"x"}])

    recorder.overrides[("POST", "/session/mysess/download")] = evil
    with pytest.raises(tarfile.FilterError):
        await api(api.ComputeSession("mysess").download(["x"], dest=tmp_path / "out"))
    assert not (tmp_path / "escaped.txt").exists()


async def test_upload_multipart_parts(api: Api, recorder: RecordingServer, tmp_path: Path) -> None:
    (tmp_path / "sub dir").mkdir()
    (tmp_path / "a.txt").write_bytes(b"AAA")
    (tmp_path / "sub dir" / "b.py").write_bytes(b"print(1)\n")
    response = await api(
        api.ComputeSession("mysess").upload(["a.txt", tmp_path / "sub dir" / "b.py"])
    )
    assert response.status == 204
    rec = recorder.last()
    assert (rec.method, rec.path) == ("POST", "/session/mysess/upload")
    assert rec.content_type == "multipart/form-data"
    assert rec.parts == [
        ("src", "a.txt", b"AAA"),
        ("src", "sub%20dir%2Fb.py", b"print(1)\n"),
    ]
    assert [unquote(name or "") for _, name, _ in rec.parts] == ["a.txt", "sub dir/b.py"]


async def test_upload_with_basedir_and_progress(
    api: Api, recorder: RecordingServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "base" / "pkg").mkdir(parents=True)
    (tmp_path / "base" / "pkg" / "m.py").write_bytes(b"x = 1\n")
    await api(
        api.ComputeSession("mysess").upload(
            [tmp_path / "base" / "pkg" / "m.py"], basedir=tmp_path / "base", show_progress=True
        )
    )
    assert recorder.last().parts == [("src", "pkg%2Fm.py", b"x = 1\n")]
    assert "Uploading files: 6 B / 6 B" in capsys.readouterr().err
    with pytest.raises(ValueError, match="outside of the base directory"):
        await api(
            api.ComputeSession("mysess").upload(
                [tmp_path / "base" / "pkg" / "m.py"], basedir=tmp_path / "elsewhere"
            )
        )


async def test_paginated_list_graphql(api: Api, recorder: RecordingServer) -> None:
    result = await api(
        api.ComputeSession.paginated_list(status="RUNNING", page_offset=0, page_size=20)
    )
    assert isinstance(result, PaginatedResult)
    assert result.total_count == 1
    assert result.items[0]["id"] == str(SESSION_ID)
    assert result.fields[0] == "id"
    rec = recorder.last()
    assert (rec.method, rec.path) == ("POST", "/admin/gql")
    assert rec.json() == {
        "query": (
            "query($limit:Int!, $offset:Int!, $status: String, $access_key: String, "
            "$filter: String, $order: String) {\n  compute_session_list(\n      "
            "limit:$limit, offset:$offset, status:$status, access_key:$access_key, "
            "filter:$filter, order:$order) {\n    items { id image type status status_info "
            "status_changed result abusing_reports }\n    total_count\n  }\n}"
        ),
        "variables": {
            "status": "RUNNING",
            "access_key": None,
            "filter": None,
            "order": None,
            "limit": 20,
            "offset": 0,
        },
    }
    for bad in (0, 101):
        with pytest.raises(ValueError):
            await api(api.ComputeSession.paginated_list(page_size=bad))
    await api(api.ComputeSession.paginated_list(fields=["name", "status"], page_offset=40))
    body = recorder.last().json()
    assert "items { name status }" in body["query"]
    assert body["variables"]["offset"] == 40


async def test_update_and_image_list(api: Api, recorder: RecordingServer) -> None:
    sess = api.ComputeSession(id=SESSION_ID)
    await api(sess.update(name="renamed", priority=3))
    body = recorder.last().json()
    assert "modify_compute_session(input: $input)" in body["query"]
    inputs = body["variables"]["input"]
    assert inputs["id"] == str(SESSION_ID)
    assert inputs["clientMutationId"]
    assert (inputs["name"], inputs["priority"]) == ("renamed", 3)
    assert sess.name == "renamed"
    assert (await api(api.ComputeSession.hello()))["version"] == "v9.20250722"
    images = await api(api.session.Image.list())
    assert images == [{"name": "python", "tag": "3.12"}]
    body = recorder.last().json()
    assert body["variables"] == {"is_operation": False}
    assert "images(is_operation: $is_operation) { name registry architecture" in body["query"]


async def test_stream_execute(recorder: RecordingServer) -> None:
    async with AsyncSession(config=make_config(recorder)) as api_session:
        sess = await api_session.ComputeSession.get_or_create("python:3.12", name="mysession")
        statuses = []
        async with sess.stream_execute('print("hello world")', mode="query") as stream:
            async for msg in stream:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                result = json.loads(msg.data)
                statuses.append(result["status"])
                if result["status"] == "finished":
                    assert result["console"] == [["stdout", "Alice"]]
                    break
                if result["status"] == "waiting-input":
                    await stream.send_text("Alice")
    rec = recorder.last()
    assert (rec.method, rec.path) == ("GET", f"/stream/session/{SESSION_ID}/execute")
    assert statuses == ["waiting-input", "finished"]
    assert rec.frames == [
        ("text", json.dumps({"code": 'print("hello world")', "mode": "query", "options": {}})),
        ("text", "Alice"),
    ]


async def test_stream_execute_batch_first_message(recorder: RecordingServer) -> None:
    async with AsyncSession(config=make_config(recorder)) as api_session:
        sess = api_session.ComputeSession("mysess", "AKOWNER")
        opts = {"clean": "*", "build": "*", "exec": "python main.py"}
        async with sess.stream_execute(mode="batch", opts=opts) as stream:
            async for msg in stream:
                if json.loads(msg.data)["status"] == "finished":
                    break
                await stream.send_text("")
        with pytest.raises(BackendClientError):
            sess.stream_execute("x", mode="continue")
    rec = recorder.last()
    assert rec.query == [("owner_access_key", "AKOWNER")]
    assert json.loads(rec.frames[0][1]) == {
        "code": "",
        "mode": "batch",
        "options": {"clean": "*", "build": "*", "buildLog": False, "exec": "python main.py"},
    }


async def test_stream_pty_framing(recorder: RecordingServer) -> None:
    async with AsyncSession(config=make_config(recorder)) as api_session:
        sess = api_session.ComputeSession("mysess")
        async with sess.stream_pty() as pty:
            assert isinstance(pty, StreamPty)
            await pty.resize(24, 80)
            await pty.write(b"ls -l\n")
            assert await pty.read() == b"LS -L\n"
            await pty.ping()
            assert await pty.read() == b""
    rec = recorder.last()
    assert (rec.method, rec.path) == ("GET", "/stream/session/mysess/pty")
    assert [json.loads(data) for _, data in rec.frames] == [
        {"type": "resize", "rows": 24, "cols": 80},
        {"type": "stdin", "chars": base64.b64encode(b"ls -l\n").decode()},
        {"type": "ping"},
    ]


async def test_listen_events(recorder: RecordingServer) -> None:
    async with AsyncSession(config=make_config(recorder)) as api_session:
        by_id = api_session.ComputeSession(id=SESSION_ID)
        async with by_id.listen_events() as events:
            received = [(ev.event, json.loads(ev.data)["sessionId"]) async for ev in events]
        assert received == [("session_started", str(SESSION_ID))]
        assert recorder.last().query == [("sessionId", str(SESSION_ID)), ("scope", "*")]
        by_name = api_session.ComputeSession("s1", "AKOWNER")
        async with by_name.listen_events(scope="session") as events:
            async for _ in events:
                pass
    assert recorder.last().path == "/events/session"
    assert recorder.last().query == [
        ("sessionName", "s1"),
        ("owner_access_key", "AKOWNER"),
        ("scope", "session"),
    ]


async def test_create_answer_without_session_id(api: Api, recorder: RecordingServer) -> None:
    recorder.overrides[("POST", "/session")] = lambda r, rec: web.json_response({}, status=201)
    with pytest.raises(BackendClientError, match="sessionId"):
        await api(api.ComputeSession.get_or_create("python:3.12", name="nosid"))


def test_handle_needs_a_name_or_id() -> None:
    with pytest.raises(ValueError):
        ComputeSession()
