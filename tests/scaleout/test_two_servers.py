"""Two API servers on one database serve the same sessions: whichever one a call reaches."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
import requests

from ai.backend.client.config import APIConfig
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import AsyncSession, Session
from portside.services.sessions import ACTIVITY_FLUSH_INTERVAL

from ..harness import DEV_ADMIN, RunningServer
from .conftest import TwoServers


def _config(server: RunningServer) -> APIConfig:
    return APIConfig(endpoint=server.api_url, access_key=DEV_ADMIN[0], secret_key=DEV_ADMIN[1])


def test_a_session_created_on_one_server_runs_and_streams_on_the_other(
    two_servers: TwoServers,
) -> None:
    name = f"two-{uuid.uuid4().hex[:8]}"

    async def main() -> tuple[dict[str, Any], list[dict[str, Any]], bytes, dict[str, Any]]:
        async with (
            AsyncSession(config=_config(two_servers.a)) as on_a,
            AsyncSession(config=_config(two_servers.b)) as on_b,
        ):
            created = await on_a.ComputeSession.get_or_create("python", name=name)
            compute = on_b.ComputeSession(name)
            try:
                await compute.execute(None, "x = 41", mode="query")
                result = await compute.execute(None, "print(x + 1)", mode="query")
                messages = []
                async with compute.stream_execute('print("Hi", input("name? "))') as stream:
                    async for message in stream:
                        messages.append(json.loads(message.data))
                        if messages[-1]["status"] == "waiting-input":
                            await stream.send_text("Ada")
                        elif messages[-1]["status"] == "finished":
                            break
                async with compute.stream_pty() as pty:
                    await pty.write(b"echo pty-$((6*7)); exit\n")
                    output = b""
                    while chunk := await pty.read():
                        output += chunk
                # B writes down the calls it served within a second; then A counts them too.
                await asyncio.sleep(ACTIVITY_FLUSH_INTERVAL + 0.5)
                info = await created.get_info()
            finally:
                await compute.destroy()
            return result, messages, output, info

    result, messages, output, info = asyncio.run(main())
    assert result["console"] == [["stdout", "42\n"]]
    assert ["stdout", "Hi Ada\n"] in [rec for m in messages for rec in m["console"]]
    assert b"pty-42" in output
    assert info["numQueriesExecuted"] >= 3
    with Session(config=_config(two_servers.a)) as on_a, pytest.raises(BackendAPIError) as e:
        on_a.ComputeSession(name).get_info()
    assert e.value.status == 404


def test_events_of_a_session_reach_a_watcher_on_the_other_server(two_servers: TwoServers) -> None:
    async def main() -> list[str]:
        async with (
            AsyncSession(config=_config(two_servers.a)) as on_a,
            AsyncSession(config=_config(two_servers.b)) as on_b,
        ):
            name = f"ev-{uuid.uuid4().hex[:8]}"
            await on_a.ComputeSession.get_or_create("python", name=name)
            watched = on_a.ComputeSession(name)
            names: list[str] = []

            async def listen() -> None:
                async with watched.listen_events() as events:
                    async for event in events:
                        names.append(event.event)

            listener = asyncio.create_task(listen())
            await asyncio.sleep(0.5)
            await on_b.ComputeSession(name).destroy()
            await asyncio.wait_for(listener, 15)
            return names

    assert asyncio.run(main())[-2:] == ["session_terminating", "session_terminated"]


def test_an_app_of_a_session_on_one_server_opens_through_the_others_proxy(
    two_servers: TwoServers,
) -> None:
    with (
        Session(config=_config(two_servers.a)) as on_a,
        Session(config=_config(two_servers.b)) as on_b,
    ):
        compute = on_a.ComputeSession.get_or_create("python", name=f"ap-{uuid.uuid4().hex[:8]}")
        try:
            info = on_b.ComputeSession(compute.name).start_service(
                "ttyd", login_session_token="dummy"
            )
            assert info["wsproxy_addr"] == two_servers.b.info["appproxy_url"]
            add = f"{info['wsproxy_addr']}/v2/proxy/{info['token']}/{compute.id}/add?app=ttyd"
            url = requests.get(add, timeout=10).json()["url"]
            with requests.Session() as browser:
                opened = browser.get(url, timeout=10)
            assert opened.status_code == 200
            assert "Portside terminal" in opened.text
        finally:
            compute.destroy()


def test_calls_through_the_balancer_reach_both_servers(two_servers: TwoServers) -> None:
    before = dict(two_servers.balancer.forwarded)
    with Session(config=_config(two_servers.balanced)) as api:
        for _ in range(4):
            api.System.get_versions()
    reached = {k: two_servers.balancer.forwarded[k] - before[k] for k in before}
    assert all(count >= 2 for count in reached.values()), reached


def test_a_run_started_on_one_server_is_continued_through_the_other(
    two_servers: TwoServers,
) -> None:
    """The run waits for input in server A; the answer, sent to B, reaches it through A."""
    name = f"run-{uuid.uuid4().hex[:8]}"
    with (
        Session(config=_config(two_servers.a)) as on_a,
        Session(config=_config(two_servers.b)) as on_b,
    ):
        on_a.ComputeSession.get_or_create("python", name=name)
        try:
            asked = on_a.ComputeSession(name).execute(
                None, 'print("Hi", input("name? "))', mode="query"
            )
            assert asked["status"] == "waiting-input"
            answered = on_b.ComputeSession(name).execute(asked["runId"], "Ada", mode="input")
            output = "".join(data for _, data in answered["console"])
            while answered["status"] != "finished":
                answered = on_b.ComputeSession(name).execute(asked["runId"], "", mode="continue")
                output += "".join(data for _, data in answered["console"])
            assert "Hi Ada" in output
        finally:
            on_b.ComputeSession(name).destroy()
