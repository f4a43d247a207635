"""Kernels are sandboxed, limited and independent of the server process."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from ai.backend.client.session import Session
from portside.agent.local import cgroups
from portside.agent.local.layout import cgroup_instance, run_root

from ..harness import RunningServer, kernel_state_files, kill_leftover_kernels, running_server
from .conftest import config_for, run


def _wait_status(compute: Any, wanted: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (info := compute.get_info())["status"] != wanted:
        assert time.monotonic() < deadline, info
        time.sleep(0.2)
    info: dict[str, Any] = compute.get_info()
    return info


def _kernel_state(server: RunningServer, session_id: uuid.UUID, api: Session) -> dict[str, Any]:
    detail = api.Admin.query(
        "query($id: UUID!) { compute_session(id: $id) { main_kernel_id } }", {"id": str(session_id)}
    )
    kernel_id = uuid.UUID(detail["compute_session"]["main_kernel_id"])
    state_file = run_root(server.data_dir) / kernel_id.hex[:16] / "state.json"
    state: dict[str, Any] = json.loads(state_file.read_text())
    return state


def test_sessions_see_neither_each_other_nor_the_server(
    server: RunningServer, api: Session, new_session: Any
) -> None:
    first, second = new_session(), new_session()
    run(first, "open('secret.txt', 'w').write('only mine')")
    first_state = _kernel_state(server, first.id, api)
    first_dir = Path(first_state["scratch"])
    assert (first_dir / "secret.txt").read_text() == "only mine"
    probe = (
        "import os\n"
        f"print(os.path.exists({str(first_dir / 'secret.txt')!r}),"
        f" os.path.exists({str(server.data_dir)!r}), os.listdir('/home'),"
        " os.path.exists('/home/work/secret.txt'), os.getuid() != 0,"
        " sorted(p for p in os.listdir('/proc') if p.isdigit()) != [],"
        f" os.path.exists({first_state['base']!r}))"
    )
    assert run(second, probe)[0] == "False False ['work'] False True True False\n"
    first_uid = run(first, "import os; print(os.getuid())")[0]
    second_uid = run(second, "import os; print(os.getuid())")[0]
    assert first_uid != second_uid
    # Another session's processes are not visible in this one's pid namespace.
    pids = run(second, "import os; print(len([p for p in os.listdir('/proc') if p.isdigit()]))")[0]
    assert int(pids) < 10


def test_a_sessions_shell_knows_only_its_own_surroundings(
    server: RunningServer, new_session: Any
) -> None:
    # Kernels adopt an IPython shell the zygote built (portside.kernel.host.prepare_shell): the
    # directories it noted there must be the session's, and one session's namespace is its own.
    first, second = new_session(), new_session()
    run(first, "mine = 1")
    probe = (
        "ip = get_ipython()\n"
        "print(ip.starting_dir, [str(d) for d in _dh], ip.profile_dir.location,"
        " 'mine' in globals(), ip.kernel is not None)"
    )
    assert run(second, probe)[0] == (
        "/home/work ['/home/work'] /tmp/.ipython/profile_default False True\n"
    )
    assert str(server.data_dir) not in run(second, "print(vars(get_ipython()))")[0]


def test_system_directories_are_read_only(new_session: Any) -> None:
    compute = new_session()
    stderr = run(compute, "open('/usr/portside-was-here', 'w')")[1]
    assert "Read-only file system" in stderr or "Permission denied" in stderr
    assert run(compute, "open('/tmp/scratch', 'w').write('ok'); print('tmp ok')")[0] == "tmp ok\n"


def test_exceeding_the_memory_limit_kills_only_that_session(new_session: Any) -> None:
    hog = new_session(resources={"mem": "256m"})
    bystander = new_session()
    hog.execute(None, "x = bytearray(600 * 1024 * 1024)", mode="query")
    info = _wait_status(hog, "ERROR")
    assert "out of memory" in info["statusInfo"]
    assert json.loads(info["statusData"])["kernel"]["oom"] is True
    assert run(bystander, "print('still fine')")[0] == "still fine\n"


def test_a_fork_bomb_is_contained(api: Session, new_session: Any, tmp_path: Path) -> None:
    bomb = new_session(resources={"cpu": 1, "mem": "4g"})
    bystander = new_session()
    # Every copy forks until the deadline; only the first process reports whether fork() ever
    # failed for it, which happens once the session's process limit is reached.
    code = (
        "import os, time\n"
        "first = os.getpid()\n"
        "deadline = time.time() + 4\n"
        "errors = 0\n"
        "while time.time() < deadline:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        errors += 1\n"
        "        time.sleep(0.01)\n"
        "if os.getpid() == first:\n"
        "    print('limited' if errors else 'unlimited', flush=True)\n"
        "os._exit(0)\n"
    )
    (tmp_path / "bomb.py").write_text(code)
    bomb.upload([tmp_path / "bomb.py"], basedir=tmp_path)
    started = bomb.execute(None, "", mode="batch", opts={"exec": "python bomb.py"})
    # While the bomb goes off, the server and other sessions keep working.
    assert api.System.get_versions()["version"] == "v9.20250722"
    assert run(bystander, "print(6 * 7)")[0] == "42\n"
    output, result = "", started
    while result["status"] != "finished":
        output += "".join(d for kind, d in result["console"] if kind == "stdout")
        result = bomb.execute(started["runId"], "", mode="continue")
    output += "".join(d for kind, d in result["console"] if kind == "stdout")
    # The session's process limit stopped the forking.
    assert output.split() == ["limited"]
    bomb.destroy()


def test_a_killed_kernel_marks_its_session_error(
    server: RunningServer, api: Session, new_session: Any
) -> None:
    compute = new_session()
    kernel_pid = _kernel_state(server, compute.id, api)["processes"]["kernel_pid"]
    os.kill(kernel_pid, signal.SIGKILL)
    info = _wait_status(compute, "ERROR")
    assert info["statusInfo"] == "the kernel process was killed by signal 9 (SIGKILL)"
    assert api.Manager.status()["status"] == "running"


def test_running_sessions_survive_a_server_restart(tmp_path: Path) -> None:
    first = running_server(tmp_path, keep_kernels=True)
    with first as server, Session(config=config_for(server)) as api:
        compute = api.ComputeSession.get_or_create("python", name="survivor")
        run(compute, "answer = 42")
        session_id = compute.id
    second = running_server(tmp_path, keep_kernels=True)
    try:
        with second as server, Session(config=config_for(server)) as api:
            compute = api.ComputeSession("survivor")
            info = compute.get_info()
            assert (info["sessionId"], info["status"]) == (str(session_id), "RUNNING")
            assert run(compute, "print(answer)")[0] == "42\n"
            fresh = api.ComputeSession.get_or_create("python", name="newcomer")
            assert run(fresh, "print('new')")[0] == "new\n"
            for handle in (compute, fresh):
                handle.destroy()
        # Destroyed sessions and the stopped server's pool leave no kernel behind, and no
        # cgroup either (the server removes its parent cgroup once nothing is left in it).
        assert kernel_state_files(tmp_path) == []
        instance = cgroup_instance(tmp_path)
        assert [*cgroups.ROOT.glob(instance), *cgroups.ROOT.glob(f"*/{instance}")] == []
    finally:
        kill_leftover_kernels(tmp_path)


def _parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("PPid:"))


def _wait_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, f"process {pid} is still there"
        time.sleep(0.05)


def test_a_kernel_that_dies_while_no_server_runs_is_reported_by_the_next(
    tmp_path: Path,
) -> None:
    try:
        first = running_server(tmp_path, keep_kernels=True)
        with first as server, Session(config=config_for(server)) as api:
            compute = api.ComputeSession.get_or_create("python", name="orphan")
            run(compute, "print(1)")
            kernel_pid = _kernel_state(server, compute.id, api)["processes"]["kernel_pid"]
        # The zygote that forked the kernel stays, as its parent, after its server has gone.
        zygote_pid = _parent_pid(kernel_pid)
        assert "portside.kernel.zygote" in Path(f"/proc/{zygote_pid}/cmdline").read_text()
        os.kill(kernel_pid, signal.SIGKILL)
        _wait_gone(kernel_pid)
        # It recorded how its last kernel ended, and then left too.
        _wait_gone(zygote_pid)
        second = running_server(tmp_path, keep_kernels=True)
        with second as server, Session(config=config_for(server)) as api:
            info = api.ComputeSession("orphan").get_info()
            assert info["status"] == "ERROR"
            assert info["statusInfo"] == "the kernel process was killed by signal 9 (SIGKILL)"
    finally:
        kill_leftover_kernels(tmp_path)


@pytest.mark.parametrize("idle_timeout", [2])
def test_idle_sessions_end_by_their_keypair_policy(tmp_path: Path, idle_timeout: int) -> None:
    import subprocess
    import sys

    with running_server(tmp_path) as server:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "portside",
                "admin",
                "policy",
                "set",
                "default",
                "--idle-timeout",
                str(idle_timeout),
                "--data-dir",
                str(tmp_path),
            ],
            check=True,
            capture_output=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("PORTSIDE_")}
            | ({"PORTSIDE_DATABASE_URL": server.db_url} if server.db_url else {}),
        )
        with Session(config=config_for(server)) as api:
            compute = api.ComputeSession.get_or_create("python", name="sleepy")
            run(compute, "print(1)")
            deadline = time.monotonic() + 30
            while True:
                listing = api.ComputeSession.paginated_list(status="TERMINATED")
                ended = [i for i in listing.items if i["id"] == str(compute.id)]
                if ended:
                    break
                assert time.monotonic() < deadline, "the idle session was never ended"
                time.sleep(0.5)
            assert ended[0]["status_info"] == "idle-timeout"


def test_without_namespaces_the_server_warns_and_still_runs_kernels(tmp_path: Path) -> None:
    from ..harness import TEST_CONFIG

    config = TEST_CONFIG + '\n[agent]\nsandbox = "none"\npool_size = 0\n'
    with running_server(tmp_path, config_text=config) as server:
        assert server.info["isolation"].startswith("process+")
        log = server.log_tail(200)
        assert "Kernel isolation: process+" in log
        assert "KERNELS ARE NOT ISOLATED" in log
        with Session(config=config_for(server)) as api:
            # Kernels still never run as root: here the runtime lives under root's home, which
            # their own uid cannot reach without a sandbox, and the error says so.
            compute = api.ComputeSession.get_or_create("python", name="unsandboxed")
            info = compute.get_info()
            assert info["status"] == "ERROR"
            assert "kernels run as unprivileged users, who cannot reach" in info["statusInfo"]
