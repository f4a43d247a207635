"""Compute sessions through our SDK against a real server: lifecycle, execution, files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import AsyncSession, Session

from ..harness import DEV_USER, RunningServer
from .conftest import config_for, run

#: The statuses in which a session holds its resources (all but PENDING and the terminal ones).
HOLDING_STATUSES = "SCHEDULED,PREPARING,RUNNING,TERMINATING"


def test_hello_world_and_zero_division(new_session: Any) -> None:
    compute = new_session()
    assert run(compute, 'print("hello world")')[0] == "hello world\n"
    _, stderr, _, code = run(compute, "1/0")
    assert "ZeroDivisionError" in stderr
    assert code == 1


def test_query_mode_is_stateful_and_counts_queries(new_session: Any) -> None:
    compute = new_session()
    run(compute, "x = 21")
    assert run(compute, "print(x * 2)")[0] == "42\n"
    assert compute.get_info()["numQueriesExecuted"] >= 3


def test_a_new_namespace_is_empty_and_a_full_reset_keeps_the_kernels_modules(
    new_session: Any,
) -> None:
    compute = new_session()
    assert run(compute, "%who")[0] == "Interactive namespace is empty.\n"
    run(compute, "x = 1\nimport colorsys")
    code = (
        "%reset -f --aggressive\n"
        "import sys\n"
        "print('x' in dir(), 'colorsys' in sys.modules, 'zmq' in sys.modules)"
    )
    # The variable and the module the cell imported are gone; what the kernel runs on stays.
    assert run(compute, code)[0] == "culling sys module...\nFalse False True\n"
    assert run(compute, "print('still answering')")[0] == "still answering\n"


def test_the_kernel_reads_requests_on_its_main_thread(new_session: Any) -> None:
    # ipykernel 7 routes every request through a shell channel thread, there for subshells that
    # no client here opens; a session's kernel reads requests on its main thread instead
    # (kernel/host.py).  Output of a thread the cell starts still belongs to that cell.
    compute = new_session()
    code = (
        "import threading\n"
        "names = {t.name for t in threading.enumerate()}\n"
        "print(threading.current_thread() is threading.main_thread(), 'Shell channel' in names)\n"
        "t = threading.Thread(target=print, args=('from a thread',))\n"
        "t.start(); t.join()"
    )
    assert run(compute, code)[0] == "True False\nfrom a thread\n"


def test_output_written_to_the_descriptors_arrives_with_its_run(new_session: Any) -> None:
    # What a child process or C code writes to descriptors 1 and 2 belongs to the run that
    # wrote it, all of it, even a burst written just before the cell ends (kernel/streams.py).
    compute = new_session()
    for i in range(5):
        code = f"import os\nos.system('echo child {i}')\nn = os.write(2, b'e' * 50000)"
        out, err, _, _ = run(compute, code)
        assert out == f"child {i}\n"
        assert err == "e" * 50000


def test_output_of_a_running_cell_arrives_while_it_runs(new_session: Any) -> None:
    # Printed text is sent a fraction of a second after it is written, without an explicit
    # flush, also when a quick run just before left its timed flush armed (kernel/streams.py).
    compute = new_session()
    for _ in range(3):
        assert run(compute, "print(1)")[0] == "1\n"
        code = "import time\nprint('a')\ntime.sleep(0.5)\nprint('b')\ntime.sleep(3)\nprint('c')"
        first = compute.execute(None, code, mode="query")
        assert first["status"] == "continued"
        assert first["console"] == [["stdout", "a\nb\n"]]
        rest = compute.execute(first["runId"], "", mode="continue")
        while rest["status"] == "continued" and not rest["console"]:
            rest = compute.execute(first["runId"], "", mode="continue")
        assert rest["console"] == [["stdout", "c\n"]]


def test_each_quick_run_gets_its_own_output_and_nothing_else(new_session: Any) -> None:
    # Output, reply and the closing status leave from the kernel's main thread when nothing
    # waits in its IOPub queue, from its IOPub thread when something does: either way in order.
    compute = new_session()
    code = (
        "import os, sys, threading\n"
        "print('main', {i})\n"
        "t = threading.Thread(target=print, args=('thread', {i}))\n"
        "t.start(); t.join()\n"
        "os.write(1, b'fd %d\\n' % {i})\n"
        "print('err', {i}, file=sys.stderr)"
    )
    for i in range(40):
        out, err, _, code_ = run(compute, code.format(i=i))
        assert (out, err, code_) == (f"main {i}\nthread {i}\nfd {i}\n", f"err {i}\n", 0)


def test_magics_awaits_and_names_that_shadow_magics(new_session: Any) -> None:
    # Each cell is transformed once per request (kernel/host.py): what a line means still
    # follows the namespace of the moment, and top-level await still runs.
    compute = new_session()
    assert run(compute, "who")[0] == "Interactive namespace is empty.\n"
    run(compute, "who = 'a variable'")
    assert run(compute, "who")[0] == "'a variable'"
    assert run(compute, "del who")[3] == 0
    assert run(compute, "who")[0] == "Interactive namespace is empty.\n"
    code = "import asyncio\nawait asyncio.sleep(0.01)\nprint('awaited', 'async' in 'no async')"
    assert run(compute, code)[0] == "awaited True\n"
    assert run(compute, "print('async and await, in words only')")[0] == (
        "async and await, in words only\n"
    )


def test_messages_the_server_cannot_read_do_not_stop_a_session(new_session: Any) -> None:
    # The kernel runs the user's code, which can publish anything on its sockets: something
    # that is no Jupyter message at all, or a signed one whose parent id is not a string.
    compute = new_session()
    code = (
        "k = get_ipython().kernel\n"
        "k.iopub_socket.send_multipart([b'not a jupyter message'])\n"
        "k.session.send(k.iopub_socket, 'status', {'execution_state': 'idle'}, "
        "parent={'msg_id': []})\n"
        "print('still answering')"
    )
    assert run(compute, code)[0] == "still answering\n"
    assert run(compute, "print(2)")[0] == "2\n"


def test_exit_codes_follow_system_exit(new_session: Any) -> None:
    compute = new_session()
    assert run(compute, "import sys; sys.exit(3)")[3] == 3
    assert run(compute, "raise SystemExit")[3] == 0
    assert run(compute, "1 + 1")[0] == "2"


def test_input_and_getpass(new_session: Any) -> None:
    compute = new_session()
    first = compute.execute(None, 'name = input("Who? "); print("hi", name)', mode="query")
    assert first["status"] == "waiting-input"
    assert first["options"] == {"is_password": False}
    assert first["console"] == [["stdout", "Who? "]]
    done = compute.execute(first["runId"], "Ada", mode="input")
    assert done["status"] == "finished"
    assert done["console"] == [["stdout", "hi Ada\n"]]
    secret = compute.execute(None, "import getpass; s = getpass.getpass(); print(len(s))")
    assert secret["status"] == "waiting-input"
    assert secret["options"] == {"is_password": True}
    assert compute.execute(secret["runId"], "abc", mode="input")["console"][-1] == ["stdout", "3\n"]


def test_long_runs_continue_after_two_seconds(new_session: Any) -> None:
    compute = new_session()
    code = "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(1)"
    first = compute.execute(None, code, mode="query")
    assert first["status"] == "continued"
    collected = "".join(d for k, d in first["console"] if k == "stdout")
    result = first
    while result["status"] != "finished":
        result = compute.execute(first["runId"], "", mode="continued")
        collected += "".join(d for k, d in result["console"] if k == "stdout")
    assert collected == "0\n1\n2\n"
    assert result["runId"] == first["runId"]


def test_runs_of_one_session_execute_in_arrival_order(
    server: RunningServer, new_session: Any
) -> None:
    compute = new_session()
    name = compute.name

    async def main() -> list[str]:
        async with AsyncSession(config=config_for(server)) as api:
            handle = api.ComputeSession(name)
            first = asyncio.create_task(
                handle.execute(None, "import time; time.sleep(1); print('first')", mode="query")
            )
            await asyncio.sleep(0.2)
            second = await handle.execute(None, "print('second')", mode="query")
            return [(await first)["console"][0][1], second["console"][0][1]]

    assert asyncio.run(main()) == ["first\n", "second\n"]


def test_batch_mode_build_and_exec_with_input(new_session: Any, tmp_path: Path) -> None:
    compute = new_session()
    (tmp_path / "main.py").write_text("import sys\nprint('main', input('n? '))\n")
    (tmp_path / "Makefile").write_text("all:\n\techo building\n")
    compute.upload([tmp_path / "main.py", tmp_path / "Makefile"], basedir=tmp_path)
    stdout, stderr, _, code = run(
        compute, "", mode="batch", opts={"clean": "*", "build": "*", "exec": "*"}, inputs=["7"]
    )
    assert code == 0, stderr
    assert "building" in stdout
    assert stdout.endswith("n? main 7\n")


def test_failed_build_skips_exec_with_127(new_session: Any) -> None:
    compute = new_session()
    stdout, _, _, code = run(compute, "", mode="batch", opts={"build": "exit 3", "exec": "echo no"})
    assert code == 127
    assert "no" not in stdout


def test_batch_phases_are_reported_when_slow(new_session: Any) -> None:
    compute = new_session()
    result = compute.execute(
        None,
        "",
        mode="batch",
        opts={"build": "sleep 2.5; echo built", "exec": "sleep 2.5; echo ran"},
    )
    statuses = [result["status"]]
    output = "".join(d for _, d in result["console"])
    while result["status"] != "finished":
        result = compute.execute(result["runId"], "", mode="continue")
        statuses.append(result["status"])
        output += "".join(d for _, d in result["console"])
    # Each two-second slice reports the last step boundary it saw; output is never lost.
    assert statuses == ["clean-finished", "build-finished", "finished"]
    assert output == "built\nran\n"


def test_reuse_by_name_gives_the_same_session(api: Session, new_session: Any) -> None:
    compute = new_session()
    again = api.ComputeSession.get_or_create("python", name=compute.name)
    assert again.id == compute.id
    with pytest.raises(BackendAPIError) as e:
        api.ComputeSession.get_or_create("python:3.9-ubuntu20.04", name=compute.name)
    assert e.value.status == 400
    assert e.value.data["data"]["existingSessionId"] == str(compute.id)
    with pytest.raises(BackendAPIError):
        api.ComputeSession.get_or_create("python", name=compute.name, no_reuse=True)


def test_bad_creation_requests_say_what_is_wrong(api: Session) -> None:
    cases = [
        ({"image": "no-such-image:1.0"}, "unknown image"),
        ({"image": "python", "resources": {"gpu": 1}}, "unknown resource slot 'gpu'"),
        ({"image": "python", "resources": {"shmem": "1g"}}, "resource_opts"),
        ({"image": "python", "resources": {"cpu": 1000}}, "can never be served"),
        ({"image": "python", "resources": {"mem": "12q"}}, "is not a size"),
        ({"image": "python", "name": "bad name!"}, "4 to 64"),
    ]
    for kwargs, message in cases:
        image = kwargs.pop("image")
        with pytest.raises(BackendAPIError) as e:
            api.ComputeSession.get_or_create(image, **kwargs)
        assert e.value.status == 400, kwargs
        assert message in e.value.data.get("msg", ""), e.value.data


def test_session_waits_pending_until_capacity_frees(api: Session, new_session: Any) -> None:
    # The whole run shares one server: sessions other tests left ending must end first, so
    # that `big` leaves exactly 4 of the 32 CPUs.
    deadline = time.monotonic() + 30
    while api.ComputeSession.paginated_list(status=HOLDING_STATUSES).total_count:
        assert time.monotonic() < deadline, "sessions of other tests never ended"
        time.sleep(0.2)
    big = new_session(resources={"cpu": 28})
    waiting = new_session(resources={"cpu": 8}, enqueue_only=True)
    deadline = time.monotonic() + 10
    while not (info := waiting.get_info())["statusInfo"]:
        assert time.monotonic() < deadline, "the scheduler never said why the session waits"
        time.sleep(0.1)
    assert info["status"] == "PENDING"
    assert "cpu: 8 requested, 4 available" in info["statusInfo"]
    big.destroy()
    deadline = time.monotonic() + 30
    while waiting.get_info()["status"] != "RUNNING":
        assert time.monotonic() < deadline, waiting.get_info()
        time.sleep(0.2)
    assert run(waiting, "print('started')")[0] == "started\n"


def test_mock_gpus_are_scheduled_and_visible(new_session: Any) -> None:
    compute = new_session(
        "python:3.9-ubuntu20.04", resources={"cpu": 8, "mem": "32g", "cuda.device": 2}
    )
    stdout = run(compute, "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])")[0]
    assert len(stdout.strip().split(",")) == 2
    occupied = json.loads(compute.get_info()["occupyingSlots"])
    assert occupied["cuda.device"] == "2"
    assert occupied["mem"] == str(32 * 1024**3)


def test_restart_loses_variables_but_keeps_files(new_session: Any, tmp_path: Path) -> None:
    compute = new_session()
    run(compute, "x = 1; open('kept.txt', 'w').write('still here')")
    compute.restart()
    stderr = run(compute, "print(x)")[1]
    assert "NameError" in stderr
    assert run(compute, "print(open('kept.txt').read())")[0] == "still here\n"


def test_rename_interrupt_complete_logs_history(new_session: Any) -> None:
    compute = new_session()
    new_name = f"renamed-{uuid.uuid4().hex[:8]}"
    compute.rename(new_name)
    assert compute.get_info()["sessionName"] == new_name
    started = compute.execute(None, "import time; time.sleep(30)", mode="query")
    assert started["status"] == "continued"
    compute.interrupt()
    result = compute.execute(started["runId"], "", mode="continue")
    while result["status"] != "finished":
        result = compute.execute(started["runId"], "", mode="continue")
    assert "KeyboardInterrupt" in "".join(d for _, d in result["console"])
    completion = compute.complete("import colle", {"row": 0, "col": 12})
    assert "collections" in completion["result"]["suggestions"]
    assert "logs" in compute.get_logs()["result"]
    history = compute.get_status_history()["result"]
    assert list(history)[:4] == ["PENDING", "SCHEDULED", "PREPARING", "RUNNING"]


def test_files_upload_list_download(new_session: Any, tmp_path: Path) -> None:
    compute = new_session()
    src = tmp_path / "src"
    (src / "sub dir").mkdir(parents=True)
    (src / "sub dir" / "a b.txt").write_text("spaces and subdirectories")
    compute.upload([src / "sub dir" / "a b.txt"], basedir=src)
    listing = compute.list_files("sub dir")
    files = json.loads(listing["files"])
    assert [f["filename"] for f in files] == ["a b.txt"]
    assert listing["abspath"] == "/home/work/sub dir"
    dest = tmp_path / "dest"
    dest.mkdir()
    compute.download(["sub dir/a b.txt"], dest=dest)
    assert (dest / "a b.txt").read_text() == "spaces and subdirectories"


def test_paths_are_confined_to_the_working_directory(new_session: Any, tmp_path: Path) -> None:
    compute = new_session()
    run(compute, "import os; os.symlink('/etc', 'etc-link'); os.symlink('/', 'root-link')")
    for path in ("../", "/etc", "etc-link", "root-link/tmp"):
        with pytest.raises(BackendAPIError) as e:
            compute.list_files(path)
        assert e.value.status == 400, path
        assert "working directory" in e.value.data["msg"]
    dest = tmp_path / "dest"
    dest.mkdir()
    for path in ("../../etc/passwd", "etc-link/passwd", "/etc/passwd"):
        with pytest.raises(BackendAPIError) as e:
            compute.download([path], dest=dest)
        assert e.value.status == 400, path
    assert list(dest.iterdir()) == []


def test_uploads_outside_the_working_directory_are_refused(
    server: RunningServer, new_session: Any
) -> None:
    import io

    from ai.backend.client.request import AttachedFile, Request

    compute = new_session()

    async def upload(name: str, size: int = 10) -> int:
        async with AsyncSession(config=config_for(server)):
            rqst = Request("POST", f"/session/{compute.id}/upload")
            rqst.attach_files([AttachedFile(name, io.BytesIO(b"x" * size), "text/plain")])
            try:
                async with rqst.fetch():
                    return 204
            except BackendAPIError as e:
                return e.status

    assert asyncio.run(upload("../escape.txt")) == 400
    assert asyncio.run(upload("/tmp/abs.txt")) == 400
    assert asyncio.run(upload("too-big.bin", 5 * 1024 * 1024)) == 413
    assert asyncio.run(upload("fine.txt")) == 204
    assert [f["filename"] for f in json.loads(compute.list_files()["files"])] == ["fine.txt"]


def test_users_cannot_see_or_touch_others_sessions(server: RunningServer, new_session: Any) -> None:
    compute = new_session()
    with Session(config=config_for(server, DEV_USER)) as user_api:
        listing = user_api.ComputeSession.paginated_list(status="RUNNING")
        assert str(compute.id) not in {str(item["id"]) for item in listing.items}
        other = user_api.ComputeSession.from_session_id(compute.id)
        for call in (other.get_info, other.destroy, lambda: other.execute(None, "1", mode="query")):
            with pytest.raises(BackendAPIError) as e:
                call()
            assert e.value.status == 404
    assert compute.get_info()["status"] == "RUNNING"


def test_graphql_session_list_keeps_field_order_and_filters(api: Session, new_session: Any) -> None:
    compute = new_session()
    data = api.Admin.query(
        'query { compute_session_list(limit: 100, offset: 0, status: "RUNNING,PENDING") {'
        " items { status name id isolation } total_count } }"
    )
    items = data["compute_session_list"]["items"]
    mine = [item for item in items if item["id"] == str(compute.id)]
    assert list(mine[0]) == ["status", "name", "id", "isolation"]
    assert mine[0]["isolation"].startswith("bwrap")
    detail = api.Admin.query(
        "query($id: UUID!) { compute_session(id: $id) { name status containers { agent } } }",
        {"id": str(compute.id)},
    )
    assert detail["compute_session"]["name"] == compute.name
    assert detail["compute_session"]["containers"][0]["agent"].startswith("local:")


def test_destroyed_session_gives_404(new_session: Any) -> None:
    compute = new_session()
    assert compute.destroy() == {"stats": {"status": "terminated"}}
    with pytest.raises(BackendAPIError) as e:
        compute.get_info()
    assert e.value.status == 404


def test_ended_sessions_leave_no_zombie_processes(server: RunningServer, new_session: Any) -> None:
    # Each sandbox's bubblewrap is a child of the server, which must collect it once the
    # sandbox has ended, not leave it to whatever process the server starts next.
    computes = [new_session() for _ in range(2)]
    for compute in computes:
        assert run(compute, "print(1)")[0] == "1\n"
        compute.destroy()

    def zombies() -> list[int]:
        found = []
        for child in psutil.Process(server.process.pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.status() == psutil.STATUS_ZOMBIE:
                    found.append(child.pid)
        return found

    deadline = time.monotonic() + 5
    while zombies() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert zombies() == []


def test_images_query_lists_the_registry(api: Session) -> None:
    images = api.Image.list(fields=("name", "tag", "aliases"))
    refs = {f"{i['name']}:{i['tag']}" for i in images}
    assert {"python:3.9-ubuntu20.04", "python:3.6-ubuntu18.04", "python:latest"} <= refs


def test_stream_execute_and_pty(server: RunningServer) -> None:
    async def main() -> tuple[list[Any], bytes]:
        async with AsyncSession(config=config_for(server)) as api:
            compute = await api.ComputeSession.get_or_create(
                "python", name=f"s-{uuid.uuid4().hex[:8]}"
            )
            messages = []
            try:
                async with compute.stream_execute('print("Hi", input("name? "))') as stream:
                    async for message in stream:
                        result = json.loads(message.data)
                        messages.append(result)
                        if result["status"] == "waiting-input":
                            await stream.send_text("Grace")
                        elif result["status"] == "finished":
                            break
                async with compute.stream_pty() as pty:
                    await pty.resize(33, 101)
                    await pty.write(b"stty size; exit\n")
                    output = b""
                    while chunk := await pty.read():
                        output += chunk
            finally:
                await compute.destroy()
            return messages, output

    messages, output = asyncio.run(main())
    console = [rec for m in messages for rec in m["console"]]
    assert ["stdout", "Hi Grace\n"] in console
    assert messages[-1]["status"] == "finished"
    assert b"33 101" in output


def test_session_events_stream_until_the_end(server: RunningServer) -> None:
    async def main() -> list[str]:
        async with AsyncSession(config=config_for(server)) as api:
            compute = await api.ComputeSession.get_or_create(
                "python", name=f"e-{uuid.uuid4().hex[:8]}"
            )
            names: list[str] = []

            async def listen() -> None:
                async with compute.listen_events() as events:
                    async for event in events:
                        names.append(event.event)
                        assert json.loads(event.data)["sessionId"] == str(compute.id)

            listener = asyncio.create_task(listen())
            await asyncio.sleep(0.5)
            await compute.destroy()
            await asyncio.wait_for(listener, 10)
            return names

    assert asyncio.run(main())[-2:] == ["session_terminating", "session_terminated"]
