"""How the zygote places a kernel in its sandbox, and how the kernel's end is recorded."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portside.agent.local.zygote_client import Zygote

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


@pytest.fixture
def user_namespace_sandbox(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A sandbox with a user namespace of its own, as bubblewrap makes for a server that is not
    root: the pid of its first process, and its run directory (``/tmp/run`` inside)."""
    rundir = tmp_path / "run"
    rundir.mkdir()
    info_r, info_w = os.pipe()
    holder = subprocess.Popen(
        [
            "bwrap",
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-net",
            "--ro-bind",
            "/",
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "--bind",
            str(rundir),
            "/tmp/run",
            "--info-fd",
            str(info_w),
            "sleep",
            "infinity",
        ],
        pass_fds=(info_w,),
    )
    os.close(info_w)
    with os.fdopen(info_r) as info:
        init_pid = json.loads(info.read())["child-pid"]
    # The sandbox is built once its first process (bubblewrap's init) has started ``sleep``.
    children = Path(f"/proc/{init_pid}/task/{init_pid}/children")
    deadline = time.monotonic() + 10
    while not any(
        Path(f"/proc/{child}/comm").read_text().strip() == "sleep"
        for child in children.read_text().split()
    ):
        assert time.monotonic() < deadline, "the sandbox did not start"
        time.sleep(0.01)
    try:
        yield init_pid, rundir
    finally:
        # The sandbox's first process: ending it ends everything in the sandbox (bubblewrap's
        # own process outside would leave it running).
        os.kill(init_pid, signal.SIGKILL)
        holder.wait()


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


async def test_a_sandbox_with_its_own_user_namespace_gets_a_monitor_that_records_the_end(
    user_namespace_sandbox: tuple[int, Path],
) -> None:
    init_pid, rundir = user_namespace_sandbox
    zygote = Zygote(sys.executable, {})
    await zygote.start()
    try:
        request: dict[str, Any] = {
            "kernel_id": "0" * 32,
            "holder_pid": init_pid,
            "uid": None,
            "gid": None,
            "cgroup_procs": [],
            "rlimits": {},
            "cpu_affinity": None,
            "workdir": "/tmp",
            "rundir": "/tmp/run",
            "record_dir": str(rundir),
            "env": {"PATH": os.environ["PATH"]},
            "connection": {
                "transport": "ipc",
                "ip": "/tmp/run/kernel",
                "shell_port": 1,
                "iopub_port": 2,
                "stdin_port": 3,
                "control_port": 4,
                "hb_port": 5,
                "key": "k",
                "signature_scheme": "hmac-sha256",
                "kernel_name": "python3",
            },
            "spec": {"image": "python"},
        }
        kernel_pid = (await zygote.spawn(request))["kernel_pid"]
        # Born in the sandbox's pid namespace, under a monitor that joined it first: the
        # zygote itself could not have entered that user namespace and left it again.
        assert len(_status(kernel_pid)["NSpid"].split()) == 2
        monitor_pid = int(_status(kernel_pid)["PPid"])
        assert zygote._process is not None
        assert monitor_pid != zygote._process.pid
        assert int(_status(monitor_pid)["PPid"]) == zygote._process.pid
        os.kill(kernel_pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not (rundir / "exit.json").exists():
            assert time.monotonic() < deadline, "no exit record"
            time.sleep(0.02)
        assert json.loads((rundir / "exit.json").read_text())["signal"] == signal.SIGKILL
    finally:
        await zygote.close(kernels_left=False)
