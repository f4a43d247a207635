from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ai.backend.client.config import set_config

from .harness import DEV_ADMIN, DEV_USER, RunningServer, database_url, reset_postgres, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One real ``portside serve`` for the whole run, in development mode (example keypairs)."""
    if database_url():
        reset_postgres(database_url())
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
