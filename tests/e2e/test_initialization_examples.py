"""Seed examples 1-3: implicit config, explicit config, AsyncSession; each prints the versions."""

from __future__ import annotations

import re
from pathlib import Path

from ..harness import RunningServer
from .examples import ClientPython, add_await, source

VERSIONS = re.compile(r"'version', 'v9\.20250722'|'version': 'v9\.20250722'")


def _assert_versions_printed(stdout: str) -> None:
    assert VERSIONS.search(stdout), stdout
    assert "manager" in stdout


def test_implicit_configuration(
    client: ClientPython, server: RunningServer, tmp_path: Path
) -> None:
    proc = client.run(source("01_implicit_config.py"), server.env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    _assert_versions_printed(proc.stdout)


def test_explicit_configuration(
    client: ClientPython, server: RunningServer, tmp_path: Path
) -> None:
    code = source("02_explicit_config.py").replace("https://api.backend.ai.local", server.api_url)
    env = server.env()
    del env["BACKEND_ENDPOINT"]
    proc = client.run(code, env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    _assert_versions_printed(proc.stdout)


def test_async_session(client: ClientPython, server: RunningServer, tmp_path: Path) -> None:
    code = add_await(source("03_async_session.py"), "api_session.System.get_versions()")
    proc = client.run(code, server.env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    _assert_versions_printed(proc.stdout)
