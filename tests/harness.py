"""Starting real Portside servers for tests: a subprocess on a free port, its own data dir."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

REPO = Path(__file__).resolve().parent.parent
DEV_ADMIN = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
DEV_USER = ("AKIANABBDUSEREXAMPLE", "C8qnIo29EZvXkPK_MXcuAakYTy4NYrxwmCEyNPlf")

#: The test configuration: enough virtual capacity for the examples' resource requests
#: (``cpu 8, mem 32g, cuda.device 2``), with a mock accelerator standing in for GPUs.
TEST_CONFIG = """
dev = true
log_level = "info"
max_upload_file_size = 4194304

[appproxy]
port = 0

[resources]
cpu = 32
mem = "256g"
detect_gpus = false

[resources.mock_cuda]
devices = 4
shares = 8
"""


#: A model folder's definition whose "model" is Python's ``http.server`` in the folder: it
#: starts at once, so model-service tests exercise the platform (replicas, health checks, the
#: ingress) in seconds.  tests/e2e runs the real example model.
HTTP_MODEL_DEFINITION = """
models:
  - name: http-model
    model_path: /models
    service:
      start_command: python -m http.server 8000 --bind 127.0.0.1
      port: 8000
      health_check:
        path: /model-definition.yaml
        interval: 1
        max_retries: 2
        initial_delay: 30
"""


def missing(reason: str) -> NoReturn:
    """Ends a test that needs what this machine lacks (an official client's Python, Ray,
    PostgreSQL).  A user without it gets a skip that says what to install; CI installs
    everything, so there it is a failure and no check goes missing unnoticed."""
    import pytest

    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must run this test)")
    pytest.skip(reason)


def database_url() -> str:
    """PORTSIDE_TEST_DATABASE_URL selects PostgreSQL; the default is SQLite in the data dir."""
    return os.environ.get("PORTSIDE_TEST_DATABASE_URL", "")


def fresh_postgres_database(url: str, name: str) -> str:
    """Creates (or re-creates) database ``name`` beside ``url``'s and returns its URL.

    Tests that rebuild a schema use their own database, so the shared test server's database
    is never pulled from under it.
    """
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    async def create() -> None:
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        await engine.dispose()

    asyncio.run(create())
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    """Drops the database ``url`` names, from a connection to the test database."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    async def drop() -> None:
        engine = create_async_engine(database_url(), isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            name = make_url(url).database
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await engine.dispose()

    asyncio.run(drop())


def server_database(data_dir: Path) -> str:
    """The PostgreSQL database of the server in ``data_dir``: created empty on first use, found
    again by a server restarted in the same directory.

    Every server of a run has its own.  Two servers on one database with different data
    directories would each take the other's sessions for its own, and the one elected to run
    the model-service reconciler would run the other's replicas on its own backend.
    """
    marker = data_dir / "test-database-url"
    if marker.exists():
        return marker.read_text()
    digest = hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:16]
    url = fresh_postgres_database(database_url(), f"portside_{digest}")
    marker.write_text(url)
    return url


@dataclass
class RunningServer:
    data_dir: Path
    api_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    info: dict[str, Any] = field(default_factory=dict)
    #: The PostgreSQL database it uses; empty for SQLite (in the data dir).
    db_url: str = ""
    #: Environment given to it beyond the test's own, for starting it again the same way.
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, keys: tuple[str, str] = DEV_ADMIN) -> dict[str, str]:
        """``BACKEND_*`` variables for a client signing with ``keys``."""
        return {
            "BACKEND_ENDPOINT": self.api_url,
            "BACKEND_ACCESS_KEY": keys[0],
            "BACKEND_SECRET_KEY": keys[1],
            "BACKEND_ENDPOINT_TYPE": "api",
        }

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(
        self, sig: int = signal.SIGTERM, timeout: float = 30, *, keep_kernels: bool = False
    ) -> int:
        """Stops the server and, unless told not to, the kernels it leaves running.

        Kernels outlive their server by design (a restarted server re-attaches to them); a
        test run should not leave sandboxes behind, so they are ended here.
        """
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not keep_kernels:
            kill_leftover_kernels(self.data_dir)
            marker = self.data_dir / "test-database-url"
            if marker.exists():
                drop_postgres_database(marker.read_text())
                marker.unlink()
        return self.process.returncode


def start_server(
    data_dir: Path,
    *,
    config_text: str = TEST_CONFIG,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> RunningServer:
    data_dir.mkdir(parents=True, exist_ok=True)
    config_path = data_dir / "portside-test.toml"
    config_path.write_text(config_text)
    server_file = data_dir / "server.json"
    server_file.unlink(missing_ok=True)
    log_path = data_dir / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "PORTSIDE_"))}
    extra = dict(extra_env or {})
    if database_url() and "PORTSIDE_DATABASE_URL" not in extra:
        env["PORTSIDE_DATABASE_URL"] = server_database(data_dir)
    env.update(extra)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "portside",
                "serve",
                "--config",
                str(config_path),
                "--data-dir",
                str(data_dir),
                "--port",
                "0",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=data_dir,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"portside serve exited with {process.returncode}:\n"
                + log_path.read_text(errors="replace")
            )
        if server_file.exists():
            info = json.loads(server_file.read_text())
            db_url = env.get("PORTSIDE_DATABASE_URL", "")
            return RunningServer(data_dir, info["api_url"], process, log_path, info, db_url, extra)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("portside serve did not start in time:\n" + log_path.read_text())


@contextmanager
def running_server(
    data_dir: Path, *, keep_kernels: bool = False, **kwargs: Any
) -> Iterator[RunningServer]:
    server = start_server(data_dir, **kwargs)
    try:
        yield server
    finally:
        server.stop(keep_kernels=keep_kernels)


def kernel_state_files(data_dir: Path) -> list[Path]:
    """The state files of the kernels a server on ``data_dir`` runs (or left running)."""
    from portside.agent.local.layout import run_root

    return sorted(run_root(data_dir).glob("*/state.json"))


def kill_leftover_kernels(data_dir: Path) -> None:
    """Ends the sandboxes of a stopped server (their first process takes the rest along) and
    removes their run directories and cgroups, which live outside the data directory."""
    from portside.agent.local.cgroups import remove_instance
    from portside.agent.local.layout import cgroup_instance, run_root
    from portside.kernel.linux import process_start_time

    for state_file in kernel_state_files(data_dir):
        try:
            processes = json.loads(state_file.read_text()).get("processes") or {}
        except (OSError, json.JSONDecodeError):
            continue
        for pid_key, start_key in (("init_pid", "holder_start"), ("kernel_pid", "kernel_start")):
            pid = processes.get(pid_key)
            if pid and process_start_time(pid) == processes.get(start_key):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    shutil.rmtree(run_root(data_dir), ignore_errors=True)
    remove_instance(cgroup_instance(data_dir), wait=5)
