"""Signed HTTP, WebSocket and SSE requests to the API (wire-protocol.md sections 2 and 4.1).

A ``Request`` is built once and then fetched, connected as a WebSocket, or opened as an event
stream.  ``fetch()`` works as ``async with`` in any session and, inside a sync ``Session``, also
as a plain ``with`` that hands back a ``SyncResponse`` whose reads block.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import PurePath
from types import TracebackType
from typing import IO, Any, NamedTuple

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from .auth import generate_signature
from .exceptions import BackendAPIError, BackendClientError
from .session import BaseSession, Session, api_session

__all__ = (
    "AttachedFile",
    "FetchContextManager",
    "Request",
    "Response",
    "SSEContextManager",
    "SSEMessage",
    "SyncResponse",
    "WebSocketContextManager",
    "WebSocketResponse",
)

RequestContent = bytes | bytearray | str | aiohttp.FormData | None


class AttachedFile(NamedTuple):
    filename: str
    stream: IO[bytes]
    content_type: str


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (uuid.UUID, PurePath, Decimal)):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _current_session() -> BaseSession:
    try:
        return api_session.get()
    except LookupError:
        raise BackendClientError(
            "API requests must be made inside a Session or AsyncSession "
            "(`with Session() as api_session:`)"
        ) from None


class Request:
    """One API request: where it goes, what it carries, and how it is signed."""

    def __init__(
        self,
        method: str = "GET",
        path: str | None = None,
        content: RequestContent = None,
        *,
        content_type: str | None = None,
        params: Mapping[str, Any] | None = None,
        override_api_version: str | None = None,
        session: BaseSession | None = None,
    ) -> None:
        self.session = session if session is not None else _current_session()
        self.config = self.session.config
        self.method = method.upper()
        self.path = (path or "").lstrip("/")
        self.params = dict(params or {})
        self.api_version = override_api_version or self.session.api_version_str
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.content: RequestContent = None
        self.content_type = "text/plain"
        self._attached_files: Sequence[AttachedFile] | None = None
        self.date: datetime | None = None
        if content is not None:
            self.set_content(content, content_type=content_type)

    def set_content(self, value: RequestContent, *, content_type: str | None = None) -> None:
        self.content = value
        if content_type is not None:
            self.content_type = content_type
        elif isinstance(value, str):
            self.content_type = "text/plain"
        else:
            self.content_type = "application/octet-stream"

    def set_json(self, value: Any) -> None:
        self.set_content(json.dumps(value, default=_json_default), content_type="application/json")

    def attach_files(self, files: Sequence[AttachedFile]) -> None:
        """Sends ``files`` as multipart form data, one ``src`` field each (section 4.2 upload)."""
        self._attached_files = files
        self.content_type = "multipart/form-data"

    def _build_url(self) -> URL:
        endpoint = self.config.endpoint
        path = self.path
        if self.config.endpoint_type == "session" and not path.startswith("server"):
            path = "func/" + path
        url = endpoint.with_path(endpoint.path.rstrip("/") + "/" + path, encoded=False)
        query = {k: v for k, v in self.params.items() if v is not None}
        return url.with_query(_flatten_query(query)) if query else url

    def _body(self) -> Any:
        if self._attached_files is not None:
            form = aiohttp.FormData(quote_fields=True)
            for f in self._attached_files:
                form.add_field("src", f.stream, filename=f.filename, content_type=f.content_type)
            return form
        if self.content is None:
            return b""
        if isinstance(self.content, str):
            return self.content.encode()
        return self.content

    def _sign(self, rel_url: str, *, anonymous: bool, signed_content_type: str) -> None:
        self.date = datetime.now(UTC)
        self.headers["Date"] = self.date.isoformat()
        self.headers["User-Agent"] = self.config.user_agent
        self.headers["X-BackendAI-Domain"] = self.config.domain
        self.headers["X-BackendAI-Version"] = self.api_version
        if anonymous or self.config.is_anonymous or self.config.endpoint_type != "api":
            return
        auth_headers, _ = generate_signature(
            method=self.method,
            version=self.api_version,
            endpoint=self.config.endpoint,
            date=self.date,
            rel_url=rel_url,
            content_type=signed_content_type,
            access_key=self.config.access_key,
            secret_key=self.config.secret_key,
            hash_type=self.config.hash_type,
        )
        self.headers.update(auth_headers)

    def _prepare(self, *, anonymous: bool, streaming: bool) -> tuple[URL, Any]:
        url = self._build_url()
        if streaming:
            # WebSocket and SSE requests carry no Content-Type but are signed with aiohttp's
            # server-side default, application/octet-stream (section 2.1).
            self.headers.pop("Content-Type", None)
            self._sign(
                str(url.relative()),
                anonymous=anonymous,
                signed_content_type="application/octet-stream",
            )
            return url, None
        body = self._body()
        if self._attached_files is None:
            self.headers["Content-Type"] = self.content_type
        self._sign(str(url.relative()), anonymous=anonymous, signed_content_type=self.content_type)
        return url, body

    def fetch(self, *, anonymous: bool = False, check_status: bool = True) -> FetchContextManager:
        return FetchContextManager(self, anonymous=anonymous, check_status=check_status)

    def connect_websocket(
        self,
        protocols: Sequence[str] = (),
        *,
        on_enter: Callable[[WebSocketResponse], Awaitable[None]] | None = None,
    ) -> WebSocketContextManager:
        if self.method != "GET":
            raise BackendClientError("WebSocket connections use GET")
        return WebSocketContextManager(self, protocols=protocols, on_enter=on_enter)

    def connect_events(self) -> SSEContextManager:
        return SSEContextManager(self)

    async def _send(self, *, anonymous: bool) -> aiohttp.ClientResponse:
        """Sends the request, trying each configured endpoint once on connection failures."""
        attempts = len(self.config.endpoints)
        for attempt in range(attempts):
            url, body = self._prepare(anonymous=anonymous, streaming=False)
            try:
                return await self.session.aiohttp_session.request(
                    self.method, url, data=body, headers=self.headers, allow_redirects=False
                )
            except aiohttp.ClientConnectionError as e:
                if attempt + 1 < attempts:
                    self.config.rotate_endpoints()
                    continue
                raise BackendClientError(
                    "Request to the API endpoint has failed.\n"
                    f"Check your network connection and/or the server status.\n➜ {e!r}"
                ) from e
            except (TimeoutError, aiohttp.ClientError) as e:
                raise BackendClientError(f"Request to the API endpoint has failed.\n➜ {e!r}") from e
        raise AssertionError("unreachable")


def _flatten_query(query: Mapping[str, Any]) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for key, value in query.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, bool):
                v = "true" if v else "false"
            items.append((key, str(v)))
    return items


async def _raise_for_status(raw: aiohttp.ClientResponse) -> None:
    if raw.status < 400:
        return
    try:
        data: Any = await raw.json(content_type=None)
    except (json.JSONDecodeError, aiohttp.ContentTypeError, UnicodeDecodeError):
        data = await raw.text(errors="replace")
    finally:
        raw.release()
    raise BackendAPIError(raw.status, raw.reason or "", data)


class Response:
    """An API response whose body reads are coroutines."""

    def __init__(self, session: BaseSession, raw: aiohttp.ClientResponse) -> None:
        self._session = session
        self._raw = raw

    @property
    def session(self) -> BaseSession:
        return self._session

    @property
    def raw_response(self) -> aiohttp.ClientResponse:
        return self._raw

    @property
    def status(self) -> int:
        return self._raw.status

    @property
    def reason(self) -> str:
        return self._raw.reason or ""

    @property
    def headers(self) -> Mapping[str, str]:
        return self._raw.headers

    @property
    def content_type(self) -> str:
        return self._raw.content_type

    @property
    def content_length(self) -> int | None:
        return self._raw.content_length

    @property
    def content(self) -> aiohttp.StreamReader:
        return self._raw.content

    async def text(self) -> str:
        return await self._raw.text()

    async def json(self, *, loads: Callable[[str], Any] = json.loads) -> Any:
        return await self._raw.json(loads=loads, content_type=None)

    async def read(self, n: int = -1) -> bytes:
        return await self._raw.content.read(n)

    async def readall(self) -> bytes:
        return await self._raw.read()


class SyncResponse:
    """The same response, read from a sync ``Session``: every read blocks and returns its value."""

    def __init__(self, session: Session, response: Response) -> None:
        self._session = session
        self._response = response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._response, name)

    @property
    def status(self) -> int:
        return self._response.status

    def text(self) -> str:
        return self._session.run(self._response.text())

    def json(self, *, loads: Callable[[str], Any] = json.loads) -> Any:
        return self._session.run(self._response.json(loads=loads))

    def read(self, n: int = -1) -> bytes:
        return self._session.run(self._response.read(n))

    def readall(self) -> bytes:
        return self._session.run(self._response.readall())


class FetchContextManager:
    """``async with rqst.fetch()`` in any session; plain ``with rqst.fetch()`` in a ``Session``."""

    def __init__(self, request: Request, *, anonymous: bool, check_status: bool) -> None:
        self.request = request
        self.anonymous = anonymous
        self.check_status = check_status
        self._raw: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> Response:
        raw = await self.request._send(anonymous=self.anonymous)
        if self.check_status:
            await _raise_for_status(raw)
        self._raw = raw
        return Response(self.request.session, raw)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._raw is not None:
            self._raw.release()
            self._raw = None

    def _sync_session(self) -> Session:
        session = self.request.session
        if not isinstance(session, Session):
            raise BackendClientError(
                "use `async with rqst.fetch()` in an AsyncSession; plain `with` is for Session"
            )
        return session

    def __enter__(self) -> SyncResponse:
        session = self._sync_session()
        return SyncResponse(session, session.run(self.__aenter__()))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._sync_session().run(self.__aexit__(exc_type, exc, tb))


class WebSocketResponse:
    """An open API WebSocket: aiohttp's interface, plus ``send_text`` (the examples' spelling)."""

    def __init__(self, session: BaseSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session = session
        self.raw_websocket = ws

    @property
    def closed(self) -> bool:
        return self.raw_websocket.closed

    async def close(self) -> None:
        await self.raw_websocket.close()

    async def send_str(self, data: str) -> None:
        await self.raw_websocket.send_str(data)

    send_text = send_str

    async def send_json(self, obj: Any) -> None:
        await self.raw_websocket.send_str(json.dumps(obj, default=_json_default))

    async def send_bytes(self, data: bytes) -> None:
        await self.raw_websocket.send_bytes(data)

    async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage:
        return await self.raw_websocket.receive(timeout)

    async def receive_str(self, timeout: float | None = None) -> str:
        return await self.raw_websocket.receive_str(timeout=timeout)

    async def receive_bytes(self, timeout: float | None = None) -> bytes:
        return await self.raw_websocket.receive_bytes(timeout=timeout)

    async def receive_json(self, timeout: float | None = None) -> Any:
        return await self.raw_websocket.receive_json(timeout=timeout)

    def __aiter__(self) -> AsyncIterator[aiohttp.WSMessage]:
        return self.raw_websocket.__aiter__()


class WebSocketContextManager:
    def __init__(
        self,
        request: Request,
        *,
        protocols: Sequence[str],
        on_enter: Callable[[WebSocketResponse], Awaitable[None]] | None,
        response_cls: type[WebSocketResponse] = WebSocketResponse,
    ) -> None:
        self.request = request
        self.protocols = protocols
        self.on_enter = on_enter
        self.response_cls = response_cls
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def __aenter__(self) -> WebSocketResponse:
        url, _ = self.request._prepare(anonymous=False, streaming=True)
        try:
            ws = await self.request.session.aiohttp_session.ws_connect(
                url, protocols=self.protocols, headers=self.request.headers, heartbeat=30.0
            )
        except aiohttp.WSServerHandshakeError as e:
            raise BackendAPIError(e.status, e.message, {"title": e.message}) from e
        except aiohttp.ClientConnectionError as e:
            raise BackendClientError(f"Request to the API endpoint has failed.\n➜ {e!r}") from e
        self._ws = ws
        response = self.response_cls(self.request.session, ws)
        if self.on_enter is not None:
            await self.on_enter(response)
        return response

    async def __aexit__(self, *exc_info: object) -> None:
        if self._ws is not None:
            await self._ws.close()


@dataclass(frozen=True, slots=True)
class SSEMessage:
    event: str
    data: str
    id: str | None = None
    retry: int | None = None


class SSEContextManager:
    """Server-sent events (section 4.4): yields messages until the server sends ``server_close``."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self._raw: aiohttp.ClientResponse | None = None

    async def _connect(self) -> aiohttp.ClientResponse:
        url, _ = self.request._prepare(anonymous=False, streaming=True)
        try:
            raw = await self.request.session.aiohttp_session.get(
                url, headers=self.request.headers, timeout=aiohttp.ClientTimeout(total=None)
            )
        except aiohttp.ClientConnectionError as e:
            raise BackendClientError(f"Request to the API endpoint has failed.\n➜ {e!r}") from e
        await _raise_for_status(raw)
        return raw

    async def __aenter__(self) -> SSEContextManager:
        self._raw = await self._connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._raw is not None:
            self._raw.release()
            self._raw = None

    async def __aiter__(self) -> AsyncIterator[SSEMessage]:
        retry_ms = 5000
        while True:
            assert self._raw is not None
            async for message in _parse_sse(self._raw.content):
                if message.retry is not None:
                    retry_ms = message.retry
                if message.event == "server_close":
                    return
                yield message
            self._raw.release()
            await asyncio.sleep(retry_ms / 1000)
            self._raw = await self._connect()


async def _parse_sse(stream: aiohttp.StreamReader) -> AsyncIterator[SSEMessage]:
    event, msg_id = "message", None
    data: list[str] = []
    retry: int | None = None
    async for raw_line in stream:
        line = raw_line.decode("utf-8").rstrip("\r\n")
        if not line:
            if data or event != "message":
                yield SSEMessage(event, "\n".join(data), msg_id, retry)
            event, data, retry = "message", [], None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            msg_id = value
        elif field == "retry" and value.isdigit():
            retry = int(value)
