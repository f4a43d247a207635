"""Driving ``portside`` as a user does: real subprocesses against the shared test server.

Each command runs as ``python -m portside ...`` with only the ``BACKEND_*`` variables of the
development admin keypair, in a fresh temporary directory.  Setup and cleanup that are not
what a test is about go through the SDK directly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ai.backend.client.config import APIConfig
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session

from ..harness import DEV_ADMIN, RunningServer

Result = subprocess.CompletedProcess[str]


@dataclass
class CLI:
    """Runs ``portside`` commands in ``cwd`` with ``env``."""

    env: dict[str, str]
    cwd: Path

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "portside", *args]

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 180) -> Result:
        return subprocess.run(
            self.argv(*args),
            env=self.env,
            cwd=self.cwd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ok(self, *args: str, stdin: str | None = None, timeout: float = 180) -> Result:
        """Runs a command that must succeed."""
        result = self(*args, stdin=stdin, timeout=timeout)
        assert result.returncode == 0, describe(result)
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def describe(result: Result) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def assert_one_line_error(result: Result, *fragments: str) -> str:
    """The command failed with exit 1 and one ``Error:`` line (no traceback); returns it."""
    assert result.returncode == 1, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, describe(result)
    assert result.stderr.rstrip().splitlines()[-1] == errors[0], describe(result)
    for fragment in fragments:
        assert fragment in errors[0], describe(result)
    return errors[0]


def wait_for(predicate: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
    return value


@pytest.fixture
def cli(server: RunningServer, tmp_path: Path) -> CLI:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "PORTSIDE_"))}
    env.update(server.env())
    # Wide enough that rich never has to fold a table in these tests.
    env["COLUMNS"] = "250"
    work = tmp_path / "work"
    work.mkdir()
    return CLI(env, work)


@pytest.fixture
def api(server: RunningServer) -> Iterator[Session]:
    config = APIConfig(endpoint=server.api_url, access_key=DEV_ADMIN[0], secret_key=DEV_ADMIN[1])
    with Session(config=config) as session:
        yield session


@pytest.fixture
def session_name(api: Session) -> Iterator[Callable[[], str]]:
    """Fresh session names; whatever sessions carry them are destroyed after the test."""
    names: list[str] = []

    def new() -> str:
        names.append(f"cli-{uuid.uuid4().hex[:10]}")
        return names[-1]

    yield new
    for name in names:
        try:
            api.ComputeSession(name).destroy(forced=True)
        except BackendAPIError as e:
            if e.status != 404:
                raise
