"""The core API through our SDK and raw HTTP: versions, signatures, errors, GraphQL keypairs."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from yarl import URL

from ai.backend.client.auth import generate_signature
from ai.backend.client.config import APIConfig
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.request import Request
from ai.backend.client.session import AsyncSession, Session

from ..harness import DEV_ADMIN, DEV_USER, RunningServer


def _config(server: RunningServer, keys: tuple[str, str] = DEV_ADMIN) -> APIConfig:
    return APIConfig(endpoint=server.api_url, access_key=keys[0], secret_key=keys[1])


def _signed_headers(
    server: RunningServer,
    method: str,
    path: str,
    *,
    keys: tuple[str, str] = DEV_ADMIN,
    date: datetime | None = None,
    content_type: str = "application/json",
) -> dict[str, str]:
    date = date or datetime.now(UTC)
    headers, _ = generate_signature(
        method=method,
        version="v9.20250722",
        endpoint=URL(server.api_url),
        date=date,
        rel_url=path,
        content_type=content_type,
        access_key=keys[0],
        secret_key=keys[1],
    )
    headers.update(
        {
            "Date": date.isoformat(),
            "X-BackendAI-Version": "v9.20250722",
            "Content-Type": content_type,
        }
    )
    return headers


async def _raw(
    server: RunningServer, method: str, path: str, headers: dict[str, str], data: bytes = b""
) -> tuple[int, str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.api_url + path, headers=headers, data=data) as resp,
    ):
        body = await resp.json(content_type=None)
        return resp.status, resp.content_type, body


def test_versions_through_a_sync_session(server: RunningServer) -> None:
    with Session(config=_config(server)) as api_session:
        versions = api_session.System.get_versions()
        assert versions == {"version": "v9.20250722", "manager": versions["manager"]}
        assert api_session.System.get_api_version() == "v9.20250722"
        assert api_session.api_version == (9, "20250722")


async def test_versions_and_auth_echo_through_an_async_session(server: RunningServer) -> None:
    async with AsyncSession(config=_config(server)) as api_session:
        assert (await api_session.System.get_versions())["version"] == "v9.20250722"
        rqst = Request("GET", "/auth")
        rqst.set_json({"echo": "hello portside"})
        async with rqst.fetch() as resp:
            assert await resp.json() == {"authorized": "yes", "echo": "hello portside"}


def test_sync_fetch_with_plain_with(server: RunningServer) -> None:
    with Session(config=_config(server)):
        rqst = Request("GET", "/auth")
        rqst.set_json({"echo": "plain with"})
        with rqst.fetch() as resp:
            assert resp.status == 200
            assert resp.json() == {"authorized": "yes", "echo": "plain with"}


def test_sync_session_from_a_thread_while_another_loop_runs(server: RunningServer) -> None:
    results: list[Any] = []

    async def busy_loop() -> None:
        def worker() -> None:
            with Session(config=_config(server)) as api_session:
                results.append(api_session.Manager.status())

        thread = threading.Thread(target=worker)
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.01)

    asyncio.run(busy_loop())
    assert results[0]["status"] == "running"
    assert "active_sessions" in results[0]


def test_keypair_info_returns_own_keys(server: RunningServer) -> None:
    with Session(config=_config(server, DEV_USER)) as api_session:
        info = api_session.KeyPair(DEV_USER[0]).info()
    assert info == {
        "user_id": "user@lablup.com",
        "access_key": DEV_USER[0],
        "secret_key": DEV_USER[1],
        "is_active": True,
        "is_admin": False,
    }


def test_graphql_keeps_the_requested_field_order(server: RunningServer) -> None:
    with Session(config=_config(server)) as api_session:
        data = api_session.Admin.query("query { keypair { is_admin access_key user_id } }")
    assert list(data["keypair"]) == ["is_admin", "access_key", "user_id"]


def test_user_cannot_read_another_keypair_or_create_one(server: RunningServer) -> None:
    with Session(config=_config(server, DEV_USER)) as api_session:
        with pytest.raises(BackendAPIError) as excinfo:
            api_session.KeyPair(DEV_ADMIN[0]).info()
        assert excinfo.value.status == 400
        assert "administrator" in str(excinfo.value.data["data"])
        with pytest.raises(BackendAPIError):
            api_session.KeyPair.create("user@lablup.com")


def test_admin_creates_a_keypair_that_works_until_revoked(server: RunningServer) -> None:
    with Session(config=_config(server)) as api_session:
        created = api_session.KeyPair.create("user@lablup.com")
        assert created["ok"] is True
        new_keys = (created["keypair"]["access_key"], created["keypair"]["secret_key"])
    with Session(config=_config(server, new_keys)) as api_session:
        assert api_session.KeyPair(new_keys[0]).info()["user_id"] == "user@lablup.com"
    with Session(config=_config(server)) as api_session:
        api_session.Admin.query(
            "mutation($ak: String!) { modify_keypair(access_key: $ak, props: {is_active: false})"
            " { ok msg } }",
            {"ak": new_keys[0]},
        )
    with Session(config=_config(server, new_keys)) as api_session:
        with pytest.raises(BackendAPIError) as excinfo:
            api_session.System.get_versions()
        assert excinfo.value.status == 401


@pytest.mark.parametrize(
    ("case", "expected_status", "expected_type"),
    [
        ("wrong-secret", 401, "auth-failed"),
        ("unknown-key", 401, "auth-failed"),
        ("missing-signature", 401, "auth-failed"),
        ("skewed-date", 400, "invalid-auth-params"),
        ("malformed-header", 400, "invalid-auth-params"),
        ("bad-version", 400, "invalid-api-params"),
    ],
)
async def test_authentication_failures(
    server: RunningServer, case: str, expected_status: int, expected_type: str
) -> None:
    path = "/auth"
    keys = DEV_ADMIN
    date = None
    if case == "wrong-secret":
        keys = (DEV_ADMIN[0], "not-the-secret")
    elif case == "unknown-key":
        keys = ("AKIANOSUCHKEY0000000", "x")
    elif case == "skewed-date":
        date = datetime.now(UTC) - timedelta(minutes=20)
    headers = _signed_headers(server, "GET", path, keys=keys, date=date)
    if case == "missing-signature":
        del headers["Authorization"]
    elif case == "malformed-header":
        headers["Authorization"] = "BackendAI this-is-not-valid"
    elif case == "bad-version":
        headers["X-BackendAI-Version"] = "v99.20990101"
    status, content_type, body = await _raw(server, "GET", path, headers, b'{"echo": "x"}')
    assert status == expected_status
    assert content_type == "application/problem+json"
    assert body["type"].endswith(expected_type)
    assert body["title"]


async def test_a_signed_request_with_a_correct_signature_passes(server: RunningServer) -> None:
    headers = _signed_headers(server, "GET", "/auth")
    status, _, body = await _raw(server, "GET", "/auth", headers, b'{"echo": "raw"}')
    assert (status, body) == (200, {"authorized": "yes", "echo": "raw"})


async def test_non_json_body_with_json_content_type_is_a_400(server: RunningServer) -> None:
    headers = _signed_headers(server, "GET", "/auth")
    status, content_type, body = await _raw(server, "GET", "/auth", headers, b"<this is not json>")
    assert status == 400
    assert content_type == "application/problem+json"
    assert "not valid JSON" in body["msg"]


async def test_missing_echo_is_a_400_naming_the_field(server: RunningServer) -> None:
    headers = _signed_headers(server, "GET", "/auth")
    status, _, body = await _raw(server, "GET", "/auth", headers)
    assert status == 400
    assert "echo" in body["msg"]


@pytest.mark.parametrize("signed", [True, False])
async def test_unknown_paths_are_404_problems(server: RunningServer, signed: bool) -> None:
    headers = _signed_headers(server, "GET", "/invalid-url-wow") if signed else {}
    status, content_type, body = await _raw(server, "GET", "/invalid-url-wow", headers)
    assert (status, content_type) == (404, "application/problem+json")
    assert body["type"].endswith("url-not-found")


async def test_wrong_method_is_a_405_problem(server: RunningServer) -> None:
    headers = _signed_headers(server, "DELETE", "/manager/status")
    status, content_type, _ = await _raw(server, "DELETE", "/manager/status", headers)
    assert (status, content_type) == (405, "application/problem+json")


async def test_graphql_errors_are_200_with_errors(server: RunningServer) -> None:
    headers = _signed_headers(server, "POST", "/admin/gql")
    status, _, body = await _raw(
        server, "POST", "/admin/gql", headers, b'{"query": "query { no_such_field }"}'
    )
    assert status == 200
    assert body["errors"][0]["message"]


def test_manager_status_and_announcement(server: RunningServer) -> None:
    with Session(config=_config(server)) as api_session:
        status = api_session.Manager.status()
        assert status["status"] == "running"
        assert status["nodes"][0]["api_version"] == "v9.20250722"
        assert api_session.Manager.get_announcement() == {"enabled": False, "message": ""}
