"""The official ``backend.ai`` command line, unchanged, against Portside.

Only environment variables point it here.  Neither 23.9.10 nor 26.9.6 has ``service ls``;
their command is ``service list``.  23.9.10's ``vfolder list`` and ``service list`` fail
with ``NoItems`` when there is nothing to list and stdout is not a terminal (a client bug),
so each listing here has something in it.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ai.backend.client.config import APIConfig
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session

from ..harness import DEV_ADMIN, HTTP_MODEL_DEFINITION, RunningServer
from .conftest import OfficialClient

Result = subprocess.CompletedProcess[str]
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
def api(server: RunningServer) -> Iterator[Session]:
    config = APIConfig(endpoint=server.api_url, access_key=DEV_ADMIN[0], secret_key=DEV_ADMIN[1])
    with Session(config=config) as session:
        yield session


def backend_ai(official: OfficialClient, server: RunningServer, cwd: Path, *args: str) -> Result:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
    env.update(server.env())
    result = subprocess.run(
        [str(official.cli), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr, f"{args}:\n{result.stderr}"
    return result


def test_run_ps_and_session_info(
    official: OfficialClient, server: RunningServer, api: Session, tmp_path: Path
) -> None:
    ran = backend_ai(official, server, tmp_path, "run", "python", "-c", "print(1)")
    assert ran.stdout.splitlines()[-1] == "1", ran.stdout
    match = re.search(r"Session name prefix: (\S+)", ran.stdout + ran.stderr)
    assert match is not None, ran.stderr
    name = match.group(1)
    try:
        table = backend_ai(official, server, tmp_path, "ps").stdout
        rows = [line for line in table.splitlines() if line.split()[:1] == [name]]
        assert len(rows) == 1, table
        assert "RUNNING" in rows[0]
        session_id = api.ComputeSession(name).get_info()["sessionId"]
        assert session_id in rows[0]

        info = backend_ai(official, server, tmp_path, "session", "info", session_id).stdout
        assert re.search(rf"^Name\s+{re.escape(name)}$", info, re.MULTILINE), info
        assert re.search(rf"^Session ID\s+{session_id}$", info, re.MULTILINE), info
        assert re.search(r"^Status\s+RUNNING$", info, re.MULTILINE), info
    finally:
        api.ComputeSession(name).destroy(forced=True)


def test_vfolder_list(
    official: OfficialClient, server: RunningServer, api: Session, tmp_path: Path
) -> None:
    name = f"offcli-{uuid.uuid4().hex[:8]}"
    api.VFolder.create(name)
    try:
        listing = backend_ai(official, server, tmp_path, "vfolder", "list").stdout
        # 23.9.10 prints its APIVersionWarning on stdout, above the table.
        headers = [line for line in listing.splitlines() if line.startswith("Host")]
        assert len(headers) == 1, listing
        assert "Name" in headers[0]
        assert "Permission" in headers[0]
        rows = [line for line in listing.splitlines() if name in line.split()]
        assert len(rows) == 1, listing
        assert "rw" in rows[0].split()
        assert "ready" in rows[0].split()
    finally:
        api.VFolder(name).delete()


def test_service_list(
    official: OfficialClient, server: RunningServer, api: Session, tmp_path: Path
) -> None:
    folder = f"offmodel-{uuid.uuid4().hex[:8]}"
    (tmp_path / "model-definition.yaml").write_text(HTTP_MODEL_DEFINITION)
    api.VFolder.create(folder)
    api.VFolder(folder).upload(["model-definition.yaml"], basedir=tmp_path)
    name = f"offsvc-{uuid.uuid4().hex[:6]}"
    service = api.Service.create("python", folder, 1, service_name=name)
    try:
        listing = backend_ai(official, server, tmp_path, "service", "list").stdout
        rows = [line for line in listing.splitlines() if name in line.split()]
        assert len(rows) == 1, listing
        assert str(service.id) in rows[0]
        assert "python" in rows[0]
    finally:
        service.delete()
        deadline = time.monotonic() + 60
        while not _gone(service):
            assert time.monotonic() < deadline, "the service was never deleted"
            time.sleep(0.3)
        api.VFolder(folder).delete()


def _gone(service: Any) -> bool:
    try:
        service.info()
    except BackendAPIError as e:
        if e.status == 404:
            return True
        raise
    return False
