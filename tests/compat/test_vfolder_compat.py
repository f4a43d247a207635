"""The official ``backend.ai`` CLI and SDK, unchanged, using virtual folders.

``vfolder create/list/info/upload/ls/download/mkdir/rm/delete`` run as subprocesses from a
scratch directory (the CLI uploads and downloads relative to its working directory), then a
script in the client's venv mounts the folder in sessions.  23.9.10 names folders in its URLs;
26.9.6 looks up the id first and uses its hex: both must work.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import uuid
from pathlib import Path

from ai.backend.client.config import APIConfig
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session

from ..harness import DEV_ADMIN, RunningServer
from .conftest import OfficialClient


def _cli(
    official: OfficialClient, server: RunningServer, cwd: Path, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
    env.update(server.env())
    return subprocess.run(
        [str(official.cli), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        input=stdin,
    )


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{proc.args}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _delete(server: RunningServer, name: str) -> None:
    config = APIConfig(endpoint=server.api_url, access_key=DEV_ADMIN[0], secret_key=DEV_ADMIN[1])
    deadline = time.monotonic() + 60
    with Session(config=config) as api:
        while True:
            try:
                api.VFolder(name).delete()
                return
            except BackendAPIError as e:
                if e.status == 404:
                    return
                if e.status != 409 or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def test_vfolder_commands_and_mounts(
    official: OfficialClient, server: RunningServer, tmp_path: Path
) -> None:
    name = f"compat-vf-{official.version.replace('.', '')}-{uuid.uuid4().hex[:6]}"
    payload = os.urandom(3 * 1024 * 1024 + 123)
    (tmp_path / "payload.bin").write_bytes(payload)
    try:
        assert f'Virtual folder "{name}" is created.' in _ok(
            _cli(official, server, tmp_path, "vfolder", "create", name, "local")
        )
        listed = _ok(_cli(official, server, tmp_path, "vfolder", "list"))
        assert name in listed
        assert "local" in listed
        info = _ok(_cli(official, server, tmp_path, "vfolder", "info", name))
        assert f'Virtual folder "{name}"' in info
        assert "- Permission: rw" in info
        assert "Done" in _ok(
            _cli(official, server, tmp_path, "vfolder", "upload", name, "payload.bin")
        )
        listing = _ok(_cli(official, server, tmp_path, "vfolder", "ls", name))
        assert "payload.bin" in listing
        assert str(len(payload)) in listing
        if not official.version.startswith("23."):
            # 26.x names the destination directory only in the upload URL (``dst_dir``).
            _ok(_cli(official, server, tmp_path, "vfolder", "mkdir", name, "sub"))
            _ok(
                _cli(
                    official,
                    server,
                    tmp_path,
                    "vfolder",
                    "upload",
                    name,
                    "payload.bin",
                    "-d",
                    "sub",
                )
            )
            assert "payload.bin" in _ok(
                _cli(official, server, tmp_path, "vfolder", "ls", name, "sub")
            )
        (tmp_path / "payload.bin").rename(tmp_path / "original.bin")
        _ok(_cli(official, server, tmp_path, "vfolder", "download", name, "payload.bin"))
        assert (tmp_path / "payload.bin").read_bytes() == payload

        mounted = official.run_json("vfolder_session.py", server.env(), name, "payload.bin")
        assert mounted["read"]["stdout"].strip() == hashlib.sha256(payload).hexdigest()
        assert mounted["write"]["exitCode"] == 0
        assert "Read-only file system" in mounted["read_only"]["stderr"]
        assert mounted["unknown"]["status"] == 404
        assert "no-such-folder-here" in mounted["unknown"]["data"]["msg"]
        _ok(_cli(official, server, tmp_path, "vfolder", "download", name, "from-session.txt"))
        assert (tmp_path / "from-session.txt").read_text() == "hi"

        _ok(_cli(official, server, tmp_path, "vfolder", "mkdir", name, "made"))
        assert "made" in _ok(_cli(official, server, tmp_path, "vfolder", "ls", name))
        _ok(_cli(official, server, tmp_path, "vfolder", "rm", name, "made", stdin="y\n"))
        assert "made" not in _ok(_cli(official, server, tmp_path, "vfolder", "ls", name))
        missing = _cli(official, server, tmp_path, "vfolder", "info", "no-such-folder-here")
        assert missing.returncode != 0
        assert "no-such-folder-here" in missing.stdout + missing.stderr
        _ok(_cli(official, server, tmp_path, "vfolder", "delete", name))
        listed = _ok(_cli(official, server, tmp_path, "vfolder", "list"))
        assert f" {name} " not in listed
    finally:
        _delete(server, name)
        _delete(server, name + "-ro")


def test_a_full_quota_is_reported_by_the_cli(
    official: OfficialClient, server: RunningServer, tmp_path: Path
) -> None:
    """23.9.10's ``vfolder create -q``; 26.9.6 has no quota option, so our SDK sets one."""
    name = f"compat-quota-{official.version.replace('.', '')}-{uuid.uuid4().hex[:6]}"
    (tmp_path / "big.bin").write_bytes(b"x" * 200_000)
    try:
        if official.version.startswith("23."):
            _ok(_cli(official, server, tmp_path, "vfolder", "create", name, "local", "-q", "100k"))
        else:
            config = APIConfig(
                endpoint=server.api_url, access_key=DEV_ADMIN[0], secret_key=DEV_ADMIN[1]
            )
            with Session(config=config) as api:
                api.VFolder.create(name, "local", quota="100k")
        refused = _cli(official, server, tmp_path, "vfolder", "upload", name, "big.bin")
        output = refused.stdout + refused.stderr
        assert refused.returncode != 0, output
        assert "quota" in output
        assert name in output
    finally:
        _delete(server, name)
