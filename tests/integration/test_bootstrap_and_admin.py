"""First start (env file, no example keys without --dev) and the ``portside admin`` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ai.backend.client.config import APIConfig
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session
from portside.services.keys import KEY_CACHE_SECONDS

from ..harness import (
    DEV_ADMIN,
    TEST_CONFIG,
    database_url,
    fresh_postgres_database,
    running_server,
)


def _read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            values[key] = value
    return values


def _admin(data_dir: Path, db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTSIDE_")}
    if db_url:
        env["PORTSIDE_DATABASE_URL"] = db_url
    return subprocess.run(
        [sys.executable, "-m", "portside", "admin", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.fixture
def fresh_db_url() -> str:
    url = database_url()
    return fresh_postgres_database(url, "portside_test_bootstrap") if url else ""


def test_first_start_writes_a_working_env_file_and_no_example_keys(
    tmp_path: Path, fresh_db_url: str
) -> None:
    config = TEST_CONFIG.replace("dev = true", "dev = false")
    extra = {"PORTSIDE_DATABASE_URL": fresh_db_url} if fresh_db_url else {}
    with running_server(tmp_path, config_text=config, extra_env=extra) as server:
        assert server.info["env_file"] == str(tmp_path / "portside.env")
        env = _read_env_file(Path(server.info["env_file"]))
        assert env["BACKEND_ENDPOINT"] == server.api_url
        assert env["BACKEND_ENDPOINT_TYPE"] == "api"
        config_from_file = APIConfig(
            endpoint=env["BACKEND_ENDPOINT"],
            access_key=env["BACKEND_ACCESS_KEY"],
            secret_key=env["BACKEND_SECRET_KEY"],
        )
        with Session(config=config_from_file) as api_session:
            assert api_session.KeyPair(env["BACKEND_ACCESS_KEY"]).info()["is_admin"] is True
        dev_config = APIConfig(
            endpoint=server.api_url, access_key=DEV_ADMIN[0], secret_key=DEV_ADMIN[1]
        )
        with Session(config=dev_config) as api_session, pytest.raises(BackendAPIError) as e:
            api_session.System.get_versions()
        assert e.value.status == 401


def test_admin_commands_create_list_and_revoke(tmp_path: Path, fresh_db_url: str) -> None:
    extra = {"PORTSIDE_DATABASE_URL": fresh_db_url} if fresh_db_url else {}
    with running_server(tmp_path, extra_env=extra) as server:
        created = _admin(tmp_path, fresh_db_url, "user", "create", "alice@example.com")
        assert created.returncode == 0, created.stderr
        keys = dict(
            line.split("=", 1)
            for line in created.stdout.splitlines()
            if line.startswith("BACKEND_")
        )
        alice = APIConfig(
            endpoint=server.api_url,
            access_key=keys["BACKEND_ACCESS_KEY"],
            secret_key=keys["BACKEND_SECRET_KEY"],
        )
        with Session(config=alice) as api_session:
            info = api_session.KeyPair(alice.access_key).info()
            assert (info["user_id"], info["is_admin"]) == ("alice@example.com", False)

        listed = _admin(tmp_path, fresh_db_url, "keypair", "list", "--output", "json")
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert {r["access_key"] for r in rows} >= {alice.access_key, DEV_ADMIN[0]}
        assert all("secret_key" not in r for r in rows)

        duplicate = _admin(tmp_path, fresh_db_url, "user", "create", "alice@example.com")
        assert duplicate.returncode != 0
        assert "already exists" in duplicate.stderr

        revoked = _admin(tmp_path, fresh_db_url, "keypair", "revoke", alice.access_key)
        assert revoked.returncode == 0, revoked.stderr
        # Made outside the server, the change reaches it once its cached key expires.
        time.sleep(KEY_CACHE_SECONDS)
        with Session(config=alice) as api_session, pytest.raises(BackendAPIError) as e:
            api_session.System.get_versions()
        assert e.value.status == 401

        missing = _admin(tmp_path, fresh_db_url, "keypair", "create", "nobody@example.com")
        assert missing.returncode != 0
        assert "no user" in missing.stderr
