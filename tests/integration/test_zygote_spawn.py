"""How the zygote places a kernel in its sandbox, and how the kernel's end is recorded."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from portside.agent.local import sandbox
from portside.agent.local.sandbox import KERNEL_RUNDIR, KERNEL_WORKDIR
from portside.agent.local.zygote_client import Zygote


@pytest.fixture
async def user_namespace_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[int, Path]]:
    """A session's sandbox as the agent builds it, with the user namespace of its own that
    bubblewrap makes for a server that is not root: the pid of its first process, and its
    run directory."""
    build_args = sandbox.bwrap_args

    def with_user_namespace(**kwargs: Any) -> list[str]:
        args = build_args(**kwargs)
        return [args[0], "--unshare-user", *args[1:]]

    monkeypatch.setattr(sandbox, "bwrap_args", with_user_namespace)
    workdir, rundir = tmp_path / "work", tmp_path / "run"
    workdir.mkdir()
    rundir.mkdir()
    holder, bwrap = await sandbox.start_holder(
        hostname="s-userns",
        workdir=workdir,
        rundir=rundir,
        runtime=sandbox.probe_runtime(sys.executable).paths,
        mounts=(),
        cgroup_procs=(),
    )
    try:
        yield holder.init_pid, rundir
    finally:
        # Ending the sandbox's first process ends everything in the sandbox.
        os.kill(holder.init_pid, signal.SIGKILL)
        await sandbox.reap(bwrap)


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
            "workdir": KERNEL_WORKDIR,
            "rundir": KERNEL_RUNDIR,
            "record_dir": str(rundir),
            "env": {"PATH": os.environ["PATH"]},
            "connection": {
                "transport": "ipc",
                "ip": f"{KERNEL_RUNDIR}/kernel",
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
