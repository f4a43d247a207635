from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ai.backend.client.config import set_config

from .harness import DEV_ADMIN, DEV_USER, RunningServer, start_server

#: Lines of the server's log attached to a failing test's report.
LOG_LINES_ON_FAILURE = 80


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    """A test that fails against a running server shows what the server logged: in CI that log
    is gone with the runner, and a timeout alone rarely says why."""
    report: pytest.TestReport = yield
    server = getattr(item, "funcargs", {}).get("server")
    if report.failed and call.when == "call" and isinstance(server, RunningServer):
        report.sections.append(("portside serve log (tail)", server.log_tail(LOG_LINES_ON_FAILURE)))
    return report


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One real ``portside serve`` for the whole run, in development mode (example keypairs)."""
    running = start_server(tmp_path_factory.mktemp("portside"))
    try:
        yield running
    finally:
        code = running.stop()
        if code not in (0, -15):
            print(running.log_tail())


@pytest.fixture
def admin_env(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Sets ``BACKEND_*`` to the development admin keypair for code that reads the environment."""
    env = server.env(DEV_ADMIN)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    set_config(None)
    yield env
    set_config(None)


@pytest.fixture
def user_env(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = server.env(DEV_USER)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    set_config(None)
    yield env
    set_config(None)


@pytest.fixture
def artifacts_dir() -> Path:
    """Where tests leave files a person may want to look at (screenshots, logs)."""
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
