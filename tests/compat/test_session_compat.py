"""The official client, unchanged, driving compute sessions: Backend.AI's ``test_kernel`` scenarios.

Backend.AI's own client integration tests for kernels (wire-protocol.md s.6) cannot run as
written (they use the removed ``Kernel`` API); each scenario here is one of them ported to
``ComputeSession``, as a script in scripts/ run inside each official client's venv.  The
``backend.ai`` CLI's session commands close the file.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from ai.backend.client.config import APIConfig
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session

from ..harness import DEV_ADMIN, RunningServer
from .conftest import OfficialClient

BATCH_MAIN = """\
import sys

if "--ask" in sys.argv:
    print("Hi,", input("who? "))
else:
    print("batch args:", sys.argv[1:])
"""


def _name(official: OfficialClient, scenario: str) -> str:
    """A session name no other test (or client version) uses."""
    return f"compat-{scenario}-{official.version.replace('.', '')}-{uuid.uuid4().hex[:8]}"


def _api(server: RunningServer) -> Session:
    """Our SDK, in this process, as the development admin."""
    return Session(
        config=APIConfig(
            endpoint=server.api_url,
            endpoint_type="api",
            access_key=DEV_ADMIN[0],
            secret_key=DEV_ADMIN[1],
        )
    )


def _cli(
    official: OfficialClient, server: RunningServer, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
    env.update(server.env())
    return subprocess.run(
        [str(official.cli), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _assert_gone(server: RunningServer, name_or_id: str) -> None:
    with _api(server) as api, pytest.raises(BackendAPIError) as e:
        api.ComputeSession(name_or_id).get_info()
    assert e.value.status == 404


def test_get_or_create_reuses_by_name(official: OfficialClient, server: RunningServer) -> None:
    """get_or_create twice with one name gives one session; numQueriesExecuted counts runs."""
    name = _name(official, "reuse")
    result = official.run_json("session_reuse.py", server.env(), name)
    first, second = result["ids"]
    assert first == second
    uuid.UUID(first)
    before, after = result["info_before"], result["info_after"]
    assert before["status"] == after["status"] == "RUNNING"
    assert before["sessionName"] == name
    assert after["numQueriesExecuted"] >= before["numQueriesExecuted"] + 2
    assert before["image"].startswith("python")
    _assert_gone(server, first)


def test_execute_query_mode(official: OfficialClient, server: RunningServer) -> None:
    """Query mode: stdout, an uncaught exception (stderr, exit code 1), and kept state."""
    result = official.run_json("session_execute.py", server.env(), _name(official, "exec"))
    hello = result["hello"]
    assert hello["statuses"][-1] == "finished"
    assert hello["stdout"] == "hello world\n"
    assert hello["stderr"] == ""
    assert hello["exitCode"] == 0
    error = result["error"]
    assert "ZeroDivisionError" in error["stderr"]
    assert error["exitCode"] == 1
    assert error["stdout"] == ""
    assert result["state_kept"]["stdout"] == "42\n"


def test_user_input(official: OfficialClient, server: RunningServer) -> None:
    """input() and getpass(): waiting-input (with is_password), then mode="input" finishes."""
    result = official.run_json("session_input.py", server.env(), _name(official, "input"))
    plain = result["input"]
    assert plain["statuses"] == ["waiting-input", "finished"]
    assert plain["options"][0] == {"is_password": False}
    assert plain["stdout"] == "Your name? Hello, Portside!\n"
    assert plain["exitCode"] == 0
    password = result["password"]
    assert password["statuses"] == ["waiting-input", "finished"]
    assert password["options"][0] == {"is_password": True}
    assert password["stdout"] == "Secret? 7\n"


def test_upload_then_batch(official: OfficialClient, server: RunningServer, tmp_path: Path) -> None:
    """An uploaded script runs in batch mode with ``exec: python <file>``; a failing command's
    exit code comes back; input() in a batch program is answered with mode="input"."""
    (tmp_path / "batch_main.py").write_text(BATCH_MAIN)
    result = official.run_json(
        "session_batch.py", server.env(), _name(official, "batch"), str(tmp_path)
    )
    batch = result["batch"]
    assert batch["statuses"][-1] == "finished"
    assert batch["stdout"] == "batch args: ['one', 'two']\n"
    assert batch["exitCode"] == 0
    failing = result["failing"]
    assert failing["exitCode"] == 2
    assert "missing.py" in failing["stderr"]
    asked = result["input"]
    assert "waiting-input" in asked["statuses"]
    assert asked["stdout"] == "who? Hi, batch-user\n"
    assert asked["exitCode"] == 0


def test_restart_keeps_files_not_variables(
    official: OfficialClient, server: RunningServer, tmp_path: Path
) -> None:
    """restart() gives a fresh interpreter (NameError) over the same files (list_files, whose
    ``files`` is a JSON string)."""
    (tmp_path / "kept.txt").write_text("keep-me\n")
    result = official.run_json(
        "session_restart.py", server.env(), _name(official, "restart"), str(tmp_path)
    )
    assert result["set"]["stdout"] == "42\n"
    after = result["after_restart"]
    assert "NameError" in after["stderr"]
    assert after["exitCode"] == 1
    assert result["files_type"] == "str"
    assert "kept.txt" in result["file_names"]
    assert result["read_back"]["stdout"] == "keep-me\n"


def test_destroyed_session_is_not_found(official: OfficialClient, server: RunningServer) -> None:
    """After destroy(), get_info() raises BackendAPIError 404 (object-not-found)."""
    result = official.run_json("session_destroy.py", server.env(), _name(official, "destroy"))
    assert result["info_before"]["status"] == "RUNNING"
    assert result["destroy"] == {"stats": {"status": "terminated"}}
    error = result["error"]
    assert error is not None, f"get_info still answered after 15 s: {result.get('last_info')}"
    assert error["status"] == 404
    assert error["data"]["type"].endswith("/object-not-found")


def test_download_files(official: OfficialClient, server: RunningServer, tmp_path: Path) -> None:
    """download() brings back an uploaded file and a file the kernel wrote, byte for byte."""
    workdir, dest = tmp_path / "work", tmp_path / "dest"
    workdir.mkdir()
    dest.mkdir()
    # 100 kB each way: under the manager's 1 MiB limits, over asyncio's default 64 KiB lines.
    payload = os.urandom(100_000)
    (workdir / "payload.bin").write_bytes(payload)
    result = official.run_json(
        "session_download.py",
        server.env(),
        _name(official, "download"),
        str(workdir),
        str(dest),
    )
    assert result["made"]["exitCode"] == 0
    assert sorted(result["download"]["file_names"]) == ["made.bin", "payload.bin"]
    assert (dest / "payload.bin").read_bytes() == payload
    assert (dest / "made.bin").read_bytes() == bytes(range(256)) * 400


def test_interrupt(official: OfficialClient, server: RunningServer) -> None:
    """interrupt() ends a 30-second sleep early: the run finishes with KeyboardInterrupt, and the
    session keeps working."""
    result = official.run_json("session_interrupt.py", server.env(), _name(official, "intr"))
    sleep = result["sleep"]
    assert result["interrupted"], "the run never came back 'continued' to interrupt"
    assert sleep["statuses"][0] == "continued"
    assert sleep["statuses"][-1] == "finished"
    assert sleep["stdout"] == "sleeping\n"
    assert "KeyboardInterrupt" in sleep["stderr"]
    assert sleep["exitCode"] == 1
    assert sleep["elapsed"] < 20
    assert result["after"]["stdout"] == "still alive\n"


def test_cli_run(official: OfficialClient, server: RunningServer) -> None:
    """``backend.ai run --rm python -c 'print(1)'`` prints 1 and removes its session."""
    proc = _cli(official, server, "run", "--rm", "python", "-c", "print(1)")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The program's output on stdout; the CLI's progress lines on stderr.
    assert proc.stdout.splitlines() == ["1"], proc.stdout
    assert "exit code = 0" in proc.stderr
    match = re.search(r"Session (\S+) is ready", proc.stderr)
    assert match, proc.stderr
    _assert_gone(server, match.group(1))


def test_cli_ps_and_session_info(official: OfficialClient, server: RunningServer) -> None:
    """``backend.ai ps`` lists a running session; ``backend.ai session info <id>`` shows it."""
    name = _name(official, "cli")
    with _api(server) as api:
        sess = api.ComputeSession.get_or_create("python", name=name)
        try:
            ps = _cli(official, server, "ps")
            assert ps.returncode == 0, ps.stdout + ps.stderr
            rows = [line for line in ps.stdout.splitlines() if line.startswith(name + " ")]
            assert len(rows) == 1, ps.stdout
            assert str(sess.id) in rows[0]
            assert "RUNNING" in rows[0]

            info = _cli(official, server, "session", "info", str(sess.id))
            assert info.returncode == 0, info.stdout + info.stderr
            fields = dict(
                re.split(r"\s{2,}", line.strip(), maxsplit=1)
                for line in info.stdout.splitlines()
                if re.match(r"^(Name|Session ID|Status|Image) {2,}", line)
            )
            assert fields["Name"] == name
            assert fields["Session ID"] == str(sess.id)
            assert fields["Status"] == "RUNNING"
            assert fields["Image"].startswith("python")
        finally:
            sess.destroy()
