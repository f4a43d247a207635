"""Seed examples 4, 5 and 8-12: listing, creating and destroying sessions, and running code.

Every example runs as the page wrote it, with our SDK and with each official client, completed
only as examples/README.md and NOTES.md allow (``handle_media``, the user-input block, ``kern``
read as ``compute_sess``; for the official clients, ``client_token=``/``send_text`` spelled as
they have them).  The tests swap the page's ``print("hello world")`` snippet for other programs
where an example is about inputs or media.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import subprocess
import sys
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ai.backend.client.config import APIConfig
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session

from ..harness import DEV_ADMIN, RunningServer
from .examples import (
    ClientPython,
    for_official,
    source,
    with_handle_media,
    with_program,
    with_user_inputs,
)

RUN_TIMEOUT = 180
UUID_LINE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: The fields ``paginated_list`` asks for by default, in the order the page's loop prints them.
DEFAULT_LIST_FIELDS = [
    "id",
    "image",
    "type",
    "status",
    "status_info",
    "status_changed",
    "result",
    "abusing_reports",
]
ASK_NAME = 'name = input("What is your name? ")\nprint(f"Hello, {name}!")'


# -- helpers -----------------------------------------------------------------------------------


def _api(server: RunningServer, keys: tuple[str, str] = DEV_ADMIN) -> Session:
    """Our SDK, in this process, signing with ``keys``."""
    return Session(
        config=APIConfig(
            endpoint=server.api_url, endpoint_type="api", access_key=keys[0], secret_key=keys[1]
        )
    )


def _running_ids(api: Session) -> set[str]:
    ids: set[str] = set()
    offset = 0
    while True:
        page = api.ComputeSession.paginated_list(
            status="RUNNING", fields=["id"], page_offset=offset, page_size=100
        )
        ids.update(str(item["id"]) for item in page.items)
        offset += len(page.items)
        if not page.items or offset >= page.total_count:
            return ids


def _adapt(client: ClientPython, code: str) -> str:
    """NOTES.md's translations for the official clients; our SDK takes the page as written."""
    return code if client.name == "portside" else for_official(code)


def _run(
    client: ClientPython,
    code: str,
    server: RunningServer,
    cwd: Path,
    *,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs an example as ``client`` runs it: as written with our SDK, with NOTES.md's
    translations with the official ones."""
    return client.run(
        _adapt(client, code), env or server.env(), cwd=cwd, stdin=stdin, timeout=RUN_TIMEOUT
    )


def _ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


def _printed_items(stdout: str) -> list[dict[str, Any]]:
    """The listing example's lines: ``{...}`` (our SDK) or ``OrderedDict([...])`` (official)."""
    items = []
    for line in stdout.splitlines():
        if line.startswith("OrderedDict(") and line.endswith(")"):
            items.append(OrderedDict(ast.literal_eval(line[len("OrderedDict(") : -1])))
        else:
            items.append(ast.literal_eval(line))
    return items


def _media(stdout: str) -> list[list[Any]]:
    """The records the reader's ``handle_media`` received, in order."""
    return [
        json.loads(line.removeprefix("MEDIA "))
        for line in stdout.splitlines()
        if line.startswith("MEDIA ")
    ]


def _query_example(program: str) -> str:
    return with_handle_media(with_program(source("08_query_mode.py"), program))


def _batch_example() -> str:
    # The page's batch loop calls ``kern.execute`` for the session it named ``compute_sess``.
    code = source("09_batch_mode.py")
    assert "kern.execute(" in code
    return code.replace("kern.execute(", "compute_sess.execute(")


def _write_batch_project(cwd: Path, mycode: str) -> None:
    (cwd / "mycode.py").write_text(mycode)
    (cwd / "setup.py").write_text(
        'from setuptools import setup\nsetup(name="mycode", version="0.1", py_modules=["mycode"])\n'
    )


@pytest.fixture
def two_running_sessions(server: RunningServer) -> Iterator[list[str]]:
    """Two RUNNING ``python`` sessions of the admin keypair, made with our SDK."""
    suffix = uuid.uuid4().hex[:8]
    with _api(server) as api:
        sessions = []
        try:
            for tag in ("a", "b"):
                sess = api.ComputeSession.get_or_create("python", name=f"list-{tag}-{suffix}")
                assert sess.status == "RUNNING"
                sessions.append(sess)
            yield [str(sess.id) for sess in sessions]
        finally:
            for sess in sessions:
                sess.destroy()


@pytest.fixture(scope="module")
def fresh_keypair_env(server: RunningServer) -> dict[str, str]:
    """A new user with a new keypair (``portside admin user create``): it owns no session."""
    email = f"lister-{uuid.uuid4().hex[:8]}@example.com"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTSIDE_", "BACKEND_"))}
    if server.db_url:
        env["PORTSIDE_DATABASE_URL"] = server.db_url
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "portside",
            "admin",
            "user",
            "create",
            email,
            "--config",
            str(server.data_dir / "portside-test.toml"),
            "--data-dir",
            str(server.data_dir),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    keys = dict(
        line.split("=", 1) for line in proc.stdout.splitlines() if line.startswith("BACKEND_")
    )
    return server.env((keys["BACKEND_ACCESS_KEY"], keys["BACKEND_SECRET_KEY"]))


# -- Listing currently running compute sessions -------------------------------------------------


def test_list_running_sessions(
    client: ClientPython, server: RunningServer, tmp_path: Path, two_running_sessions: list[str]
) -> None:
    """04_list_sessions.py: the user sees one printed item (the requested fields) per RUNNING
    session, ours among them."""
    proc = _run(client, source("04_list_sessions.py"), server, tmp_path)
    _ok(proc)
    items = _printed_items(proc.stdout)
    printed_ids = [str(item["id"]) for item in items]
    for session_id in two_running_sessions:
        assert printed_ids.count(session_id) == 1, proc.stdout
    for item in items:
        assert list(item) == DEFAULT_LIST_FIELDS, item
        assert item["status"] == "RUNNING"
    ours = [item for item in items if str(item["id"]) in two_running_sessions]
    assert all(item["image"].startswith("python") for item in ours), ours


def test_list_running_sessions_when_there_are_none(
    client: ClientPython, server: RunningServer, tmp_path: Path, fresh_keypair_env: dict[str, str]
) -> None:
    """04_list_sessions.py for a keypair with no session: nothing is printed, exit code 0."""
    proc = _run(client, source("04_list_sessions.py"), server, tmp_path, env=fresh_keypair_env)
    _ok(proc)
    assert proc.stdout == ""


# -- Creating and destroying a compute session --------------------------------------------------


@pytest.fixture
def example_folders(server: RunningServer) -> Iterator[None]:
    """The folders the example mounts, made the way a user would make them first."""
    config = APIConfig(endpoint=server.api_url, access_key=DEV_ADMIN[0], secret_key=DEV_ADMIN[1])
    with Session(config=config) as api:
        for name in ("mydata", "mymodel"):
            api.VFolder.create(name)
        try:
            yield
        finally:
            for name in ("mydata", "mymodel"):
                api.VFolder(name).delete()


def test_create_destroy(
    client: ClientPython, server: RunningServer, tmp_path: Path, example_folders: None
) -> None:
    """05_create_destroy.py as written, mounts and all: the user sees the new session's UUID."""
    proc = _run(client, source("05_create_destroy.py"), server, tmp_path)
    _ok(proc)
    assert UUID_LINE.match(proc.stdout.strip()), proc.stdout


def test_create_destroy_without_mounts(
    client: ClientPython, server: RunningServer, tmp_path: Path
) -> None:
    """05_create_destroy.py minus its ``mounts=`` line: the user sees a UUID, and the session
    (8 CPUs, 32 GiB, 2 CUDA devices) is gone once the example ends."""
    mounts_line = '        mounts=["mydata", "mymodel"],  # vfolder names\n'
    code = source("05_create_destroy.py")
    assert mounts_line in code
    proc = _run(client, code.replace(mounts_line, ""), server, tmp_path)
    _ok(proc)
    printed = proc.stdout.strip()
    assert UUID_LINE.match(printed), proc.stdout
    with _api(server) as api:
        assert printed not in _running_ids(api)
        with pytest.raises(BackendAPIError) as e:
            api.ComputeSession.from_session_id(uuid.UUID(printed)).get_info()
        assert e.value.status == 404


# -- Snippet execution (query mode) -------------------------------------------------------------


def test_query_mode(client: ClientPython, server: RunningServer, tmp_path: Path) -> None:
    """08_query_mode.py: the user sees exactly "hello world"."""
    proc = _run(client, with_handle_media(source("08_query_mode.py")), server, tmp_path)
    _ok(proc)
    assert proc.stdout == "hello world\n"


# -- Script execution (batch mode) --------------------------------------------------------------


def test_batch_mode(client: ClientPython, server: RunningServer, tmp_path: Path) -> None:
    """09_batch_mode.py: mycode.py and setup.py are uploaded, built, and run with two arguments;
    the user sees the script's output.

    The page's loop answers any unfinished status with ``mode = "continued"``, which the
    official clients refuse before sending (``Invalid execution mode``; their spelling is
    ``"continue"``).  With them this example works only while the server finishes the run
    within one 2-second slice, as it does for this small build.
    """
    _write_batch_project(tmp_path, 'import sys\nprint("args:", sys.argv[1:])\n')
    proc = _run(client, with_handle_media(_batch_example()), server, tmp_path)
    _ok(proc)
    assert "args: ['arg1', 'arg2']\n" in proc.stdout
    assert "MEDIA" not in proc.stdout


# -- Handling user inputs -----------------------------------------------------------------------


def test_user_input_query_mode(client: ClientPython, server: RunningServer, tmp_path: Path) -> None:
    """The user-input block in 08_query_mode.py: the prompt shows, the answer typed on stdin goes
    to the program, and the user sees the greeting."""
    code = with_handle_media(with_user_inputs(source("08_query_mode.py")))
    proc = _run(client, with_program(code, ASK_NAME), server, tmp_path, stdin="Portside\n")
    _ok(proc)
    assert proc.stdout == "What is your name? Hello, Portside!\n"


def test_user_input_password(client: ClientPython, server: RunningServer, tmp_path: Path) -> None:
    """The user-input block's password branch: ``getpass.getpass()`` asks on the terminal with
    echo off, and the program receives what the user typed.

    getpass reads /dev/tty, not stdin, so the example runs under a pseudo-terminal.
    """
    code = with_handle_media(with_user_inputs(source("08_query_mode.py")))
    program = 'import getpass\nsecret = getpass.getpass("Secret word: ")\nprint(len(secret))'
    proc = client.run_in_terminal(
        with_program(code, program),
        server.env(),
        cwd=tmp_path,
        answers=[("Password: ", "hunter2")],
        timeout=RUN_TIMEOUT,
    )
    _ok(proc)
    shown = proc.stdout
    # The kernel's prompt, then the local getpass prompt; the password itself is never echoed.
    assert "Secret word: Password: \n7\n" in shown, shown
    assert "hunter2" not in shown


def test_user_input_batch_mode(client: ClientPython, server: RunningServer, tmp_path: Path) -> None:
    """The user-input block in 09_batch_mode.py: mycode.py asks with input(), the user answers on
    stdin and sees the script's reply."""
    _write_batch_project(
        tmp_path,
        'import sys\nname = input("Who are you? ")\nprint(f"Hello, {name}!", sys.argv[1:])\n',
    )
    code = with_handle_media(with_user_inputs(_batch_example()))
    proc = _run(client, code, server, tmp_path, stdin="Portside\n")
    _ok(proc)
    assert "Who are you? Hello, Portside! ['arg1', 'arg2']\n" in proc.stdout


# -- Handling multi-media outputs ---------------------------------------------------------------

SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20">'
    '<circle cx="10" cy="10" r="8"/></svg>'
)


def test_media_png(client: ClientPython, server: RunningServer, tmp_path: Path) -> None:
    """A matplotlib figure: handle_media receives an image/png record whose content is a data
    URI of a PNG."""
    program = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"
    proc = _run(client, _query_example(program), server, tmp_path)
    _ok(proc)
    records = _media(proc.stdout)
    assert [(kind, media[0]) for kind, media in records] == [("media", "image/png")], records
    data = records[0][1][1]
    assert data.startswith("data:image/png;base64,")
    assert base64.b64decode(data.removeprefix("data:image/png;base64,")).startswith(b"\x89PNG")


def test_media_svg(client: ClientPython, server: RunningServer, tmp_path: Path) -> None:
    """An SVG displayed with IPython: handle_media receives image/svg+xml with the XML text."""
    program = f"from IPython.display import SVG, display\ndisplay(SVG({SVG!r}))"
    proc = _run(client, _query_example(program), server, tmp_path)
    _ok(proc)
    records = _media(proc.stdout)
    assert len(records) == 1, records
    kind, (mime, data) = records[0]
    assert (kind, mime) == ("media", "image/svg+xml")
    assert data.startswith("<svg")
    assert '<circle cx="10" cy="10" r="8"' in data


def test_media_drawing(client: ClientPython, server: RunningServer, tmp_path: Path) -> None:
    """A turtle drawing: handle_media receives application/x-sorna-drawing records whose content
    is a JSON string of drawing commands, the canvas first."""
    program = (
        "from portside.drawing import Canvas, Turtle\n"
        "c = Canvas(100, 100)\nt = Turtle(c)\nt.forward(10)"
    )
    proc = _run(client, _query_example(program), server, tmp_path)
    _ok(proc)
    records = _media(proc.stdout)
    assert records, proc.stdout
    commands = []
    for kind, (mime, data) in records:
        assert (kind, mime) == ("media", "application/x-sorna-drawing")
        assert isinstance(data, str)
        decoded = json.loads(data)
        assert isinstance(decoded, list)
        assert all(isinstance(command, list) for command in decoded)
        commands.extend(decoded)
    canvas_id, op, width, height = commands[0][:4]
    assert (op, width, height) == ("canvas", 100, 100)
    lines = [c for c in commands if c[1] == "obj" and c[3][0] == "line"]
    assert lines, commands
    assert all(c[0] == canvas_id for c in commands)


def test_media_html(client: ClientPython, server: RunningServer, tmp_path: Path) -> None:
    """HTML as a cell's value: handle_media receives the record ["html", "<b>x</b>"]."""
    program = 'from IPython.display import HTML\nHTML("<b>x</b>")'
    proc = _run(client, _query_example(program), server, tmp_path)
    _ok(proc)
    assert _media(proc.stdout) == [["html", "<b>x</b>"]]


# -- Asynchronous mode --------------------------------------------------------------------------


def test_async_mode(client: ClientPython, server: RunningServer, tmp_path: Path) -> None:
    """12_async_mode.py (stream_execute over a WebSocket): the user sees exactly "hello world"."""
    proc = _run(client, with_handle_media(source("12_async_mode.py")), server, tmp_path)
    _ok(proc)
    assert proc.stdout == "hello world\n"


def test_async_mode_media(client: ClientPython, server: RunningServer, tmp_path: Path) -> None:
    """12_async_mode.py with an SVG: handle_media receives it through the stream."""
    program = f"from IPython.display import SVG, display\ndisplay(SVG({SVG!r}))"
    code = with_program(with_handle_media(source("12_async_mode.py")), program)
    proc = _run(client, code, server, tmp_path)
    _ok(proc)
    assert _media(proc.stdout) == [["media", ["image/svg+xml", SVG]]]


def test_async_mode_user_input(client: ClientPython, server: RunningServer, tmp_path: Path) -> None:
    """12_async_mode.py with input(): the prompt shows, the answer read from stdin goes back over
    the WebSocket (``stream.send_text``; ``send_str`` for the official clients), and the user
    sees the greeting."""
    code = with_program(with_handle_media(source("12_async_mode.py")), ASK_NAME)
    proc = _run(client, code, server, tmp_path, stdin="Portside\n")
    _ok(proc)
    assert proc.stdout == "What is your name? Hello, Portside!\n"
