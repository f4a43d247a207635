"""The examples page's "Accessing Container Applications": both variants, and the printed URL
opened in a real browser shows a working terminal inside the session."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from pathlib import Path

from ai.backend.client.config import APIConfig
from ai.backend.client.session import Session

from ..harness import DEV_ADMIN, RunningServer
from .browser import Browser
from .examples import ClientPython, add_await, fill, for_official, source

TERMINAL_TEXT = """(() => {
  const buffer = window.term.buffer.active;
  const lines = [];
  for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
  return lines.join("\\n");
})()"""


def _create_call(name: str) -> str:
    return f'("python", name="{name}")'


def _run_example(client: ClientPython, code: str, server: RunningServer, cwd: Path) -> str:
    if client.name != "portside":
        code = for_official(code)
    proc = client.run(code, server.env(), cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    url = proc.stdout.strip().splitlines()[-1]
    assert url.startswith("http://"), proc.stdout
    return url


def _destroy(server: RunningServer, name: str) -> None:
    config = APIConfig(endpoint=server.api_url, access_key=DEV_ADMIN[0], secret_key=DEV_ADMIN[1])
    with Session(config=config) as api:
        api.ComputeSession(name).destroy()


async def _use_terminal(url: str, profile: Path, screenshot: Path) -> str:
    marker = f"portside-{secrets.token_hex(4)}"
    async with Browser(profile) as browser:
        await browser.goto(url)
        await browser.wait_for(
            "window.term !== undefined && document.getElementById('status')"
            " && document.getElementById('status').textContent === ''"
        )
        await browser.wait_for(f"{TERMINAL_TEXT}.includes('$')")
        await browser.evaluate("window.term.focus()")
        await browser.type_text(f"echo {marker}")
        await browser.press_enter()
        text = await browser.wait_for(
            f"(() => {{ const t = {TERMINAL_TEXT}; "
            f"return t.split('\\n').some(l => l.trim() === '{marker}') ? t : ''; }})()"
        )
        await browser.screenshot(screenshot)
    assert f"echo {marker}" in text
    return marker


def test_start_service_example_opens_a_terminal_in_a_browser(
    server: RunningServer, client: ClientPython, tmp_path: Path, artifacts_dir: Path
) -> None:
    """The sync variant prints a URL; Chromium opens it, and `echo` runs in the session."""
    name = f"app-{uuid.uuid4().hex[:8]}"
    code = fill(
        source("06_start_service.py"), "get_or_create", "get_or_create" + _create_call(name)
    )
    try:
        url = _run_example(client, code, server, tmp_path)
        screenshot = artifacts_dir / f"webterm-{client.name}.png"
        asyncio.run(_use_terminal(url, tmp_path / "chromium", screenshot))
        assert screenshot.stat().st_size > 1000
    finally:
        _destroy(server, name)


def test_start_service_request_example(
    server: RunningServer, client: ClientPython, tmp_path: Path
) -> None:
    """The raw-Request variant (the page's "before 23.09.8" one) prints a URL that works too."""
    name = f"app-{uuid.uuid4().hex[:8]}"
    code = fill(
        source("07_start_service_request.py"), "get_or_create", "get_or_create" + _create_call(name)
    )
    code = add_await(code, "api_session.ComputeSession.get_or_create(")
    try:
        url = _run_example(client, code, server, tmp_path)
        asyncio.run(_use_terminal(url, tmp_path / "chromium", tmp_path / "shot.png"))
    finally:
        _destroy(server, name)


def test_links_need_their_permit_and_a_live_session(server: RunningServer) -> None:
    """Without the permit cookie an app answers 403; a token for an ended session gives 404."""
    import requests

    config = APIConfig(endpoint=server.api_url, access_key=DEV_ADMIN[0], secret_key=DEV_ADMIN[1])
    with Session(config=config) as api:
        compute = api.ComputeSession.get_or_create("python", name=f"app-{uuid.uuid4().hex[:8]}")
        info = compute.start_service("ttyd", login_session_token="dummy")
        add = f"{info['wsproxy_addr']}/v2/proxy/{info['token']}/{compute.id}/add?app=ttyd"
        url = requests.get(add, timeout=10).json()["url"]
        app_root = url.split("/_portside/")[0] + "/"
        refused = requests.get(app_root, timeout=10)
        assert refused.status_code == 403
        assert "permit" in refused.json()["msg"]
        forged = requests.get(url[:-4] + "AAAA", timeout=10, allow_redirects=False)
        assert forged.status_code == 403
        other_session = add.replace(str(compute.id), str(uuid.uuid4()))
        assert requests.get(other_session, timeout=10).status_code == 403
        wrong_app = add.replace("app=ttyd", "app=jupyter")
        assert requests.get(wrong_app, timeout=10).status_code == 403
        with requests.Session() as browser:
            opened = browser.get(url, timeout=10)
            assert opened.status_code == 200
            assert "Portside terminal" in opened.text
        compute.destroy()
        gone = requests.get(add, timeout=10)
        assert gone.status_code == 404
        assert gone.json()["msg"] == "the session has ended"
