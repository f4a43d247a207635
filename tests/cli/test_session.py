"""``portside ps`` and ``portside session ...``."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

import pytest

from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session

from .conftest import CLI, assert_one_line_error, describe


def _row_of(table: str, first: str) -> list[str]:
    """The cells of the one row whose first cell is ``first`` (cells are 2+ spaces apart)."""
    rows = [re.split(r"\s{2,}", line.strip()) for line in table.splitlines()]
    matches = [row for row in rows if row[0] == first]
    assert len(matches) == 1, table
    return matches[0]


def test_ps_table_and_json(cli: CLI, session_name: Callable[[], str]) -> None:
    name = session_name()
    created = json.loads(cli.ok("session", "create", "python", "-t", name, "-o", "json").stdout)
    assert created["name"] == name
    assert created["status"] == "RUNNING"
    table = cli.ok("ps").stdout
    assert re.split(r"\s{2,}", table.splitlines()[0].strip())[:3] == ["Name", "Session ID", "Image"]
    row = _row_of(table, name)
    assert created["id"] in row
    assert "RUNNING" in row
    listed = json.loads(cli.ok("ps", "--output", "json").stdout)
    mine = [s for s in listed if s["name"] == name]
    assert len(mine) == 1
    assert mine[0]["id"] == created["id"]
    assert mine[0]["status"] == "RUNNING"
    assert mine[0]["image"].startswith("python")
    again = json.loads(cli.ok("session", "list", "-o", "json").stdout)
    assert [s for s in again if s["name"] == name] == mine
    cli.ok("session", "rm", name)
    assert name not in cli.ok("ps").stdout
    ended = json.loads(cli.ok("ps", "--all", "-o", "json").stdout)
    assert any(s["name"] == name and s["status"] == "TERMINATED" for s in ended)


def test_session_lifecycle(cli: CLI, api: Session, session_name: Callable[[], str]) -> None:
    name, new_name = session_name(), session_name()
    created = cli.ok("session", "create", "python", "-t", name, "-r", "cpu=1", "-r", "mem=512m")
    assert f"Session {name} is ready" in created.stderr
    assert "PREPARING" in created.stderr  # start-up progress from the status events
    info = cli.ok("session", "info", name).stdout
    assert _row_of(info, "Name") == ["Name", name]
    assert _row_of(info, "Status") == ["Status", "RUNNING"]
    assert _row_of(info, "Resources") == ["Resources", "cpu=1, mem=512 MiB"]
    assert _row_of(info, "Apps") == ["Apps", "ttyd"]
    details = json.loads(cli.ok("session", "info", name, "-o", "json").stdout)
    assert details["sessionName"] == name
    assert details["occupyingSlots"]["mem"] == str(512 * 2**20)
    # The session's id works wherever its name does.
    by_id = json.loads(cli.ok("session", "info", details["sessionId"], "-o", "json").stdout)
    assert by_id["sessionName"] == name

    cli.ok("run", "python", "-t", name, "-q", "-c", "x = 42; print('state kept', x)")
    cli.ok("session", "rename", name, new_name)
    assert (
        json.loads(cli.ok("session", "info", new_name, "-o", "json").stdout)["sessionId"]
        == (details["sessionId"])
    )
    assert "kernel" in cli.ok("session", "logs", new_name).stdout  # the kernel's own console
    cli.ok("session", "restart", new_name)
    after = cli("run", "python", "-t", new_name, "-q", "-c", "print(x)")
    assert after.returncode == 1
    assert "NameError" in after.stderr
    removed = cli.ok("session", "rm", new_name)
    assert f"Destroyed session {new_name}" in removed.stderr
    with pytest.raises(BackendAPIError):
        api.ComputeSession(new_name).get_info()


def test_upload_download_and_ls(cli: CLI, session_name: Callable[[], str]) -> None:
    name = session_name()
    cli.ok("session", "create", "python", "-t", name, "-q")
    payload = bytes(range(256)) * 2048  # 512 KiB
    (cli.cwd / "data").mkdir()
    (cli.cwd / "data" / "blob.bin").write_bytes(payload)
    (cli.cwd / "notes.txt").write_text("some notes\n")
    up = cli.ok("session", "upload", name, "notes.txt", "data/blob.bin")
    assert "Uploading 2 files" in up.stderr
    assert "100%" in up.stderr
    assert "512.0/512.0 kB" in up.stderr or "524.3/524.3 kB" in up.stderr

    listing = cli.ok("session", "ls", name).stdout
    assert "notes.txt" in listing
    assert "data" in listing
    files = json.loads(cli.ok("session", "ls", name, "data", "-o", "json").stdout)
    assert [(f["filename"], f["size"]) for f in files] == [("blob.bin", len(payload))]

    down = cli.ok("session", "download", name, "data/blob.bin", "notes.txt", "--dest", "back")
    assert "Downloading 2 files" in down.stderr
    assert "100%" in down.stderr
    assert "blob.bin, notes.txt" in down.stderr  # the CLI says what arrived
    # Like Backend.AI's agent, each requested file arrives under its own name.
    assert (cli.cwd / "back" / "blob.bin").read_bytes() == payload
    assert (cli.cwd / "back" / "notes.txt").read_text() == "some notes\n"
    quiet = cli.ok("session", "download", name, "notes.txt", "--dest", "again", "-q")
    assert quiet.stderr == ""
    assert (cli.cwd / "again" / "notes.txt").exists()
    missing = cli("session", "download", name, "no-such-file")
    assert_one_line_error(missing, "no-such-file")


def test_events_until_the_session_ends(cli: CLI, session_name: Callable[[], str]) -> None:
    name = session_name()
    cli.ok("session", "create", "python", "-t", name, "-q")
    follower = cli.popen("session", "events", name)
    try:
        assert follower.stderr is not None
        assert "Following the events" in follower.stderr.readline()
        time.sleep(0.5)
        cli.ok("session", "rm", name)
        stdout, stderr = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0, stderr
    names = [line.split()[0] for line in stdout.splitlines()]
    assert "session_terminating" in names
    assert names[-1] == "session_terminated"


def test_session_errors_are_one_line(cli: CLI) -> None:
    assert_one_line_error(cli("session", "info", "no-such-session"), "no-such-session")
    assert_one_line_error(cli("session", "rm", "no-such-session"), "no-such-session")
    assert_one_line_error(cli("session", "create", "python", "-t", "x"), "4 to 64")
    no_keys = {k: v for k, v in cli.env.items() if k != "BACKEND_ACCESS_KEY"}
    anonymous = CLI(no_keys, cli.cwd)("ps")
    assert_one_line_error(anonymous, "BACKEND_ACCESS_KEY")
    wrong_key = CLI({**cli.env, "BACKEND_SECRET_KEY": "wrong"}, cli.cwd)("ps")
    assert_one_line_error(wrong_key)
    unreachable = CLI({**cli.env, "BACKEND_ENDPOINT": "http://127.0.0.1:9"}, cli.cwd)("ps")
    assert_one_line_error(unreachable)
    assert describe(unreachable)
