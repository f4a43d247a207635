"""The official client, unchanged, against Portside: core calls and authentication failures."""

from __future__ import annotations

import pytest

from ..harness import DEV_ADMIN, RunningServer
from .conftest import OfficialClient


def test_core_calls(official: OfficialClient, server: RunningServer) -> None:
    result = official.run_json("core_checks.py", server.env(), "compat-echo")
    assert result["versions"]["version"] == "v9.20250722"
    assert result["versions"]["manager"]
    assert result["status"]["status"] == "running"
    assert "active_sessions" in result["status"]
    assert result["keypair"]["access_key"] == DEV_ADMIN[0]
    assert result["keypair"]["secret_key"] == DEV_ADMIN[1]
    assert result["keypair"]["is_admin"] is True
    assert result["echo"] == {"authorized": "yes", "echo": "compat-echo"}


@pytest.mark.parametrize(
    ("case", "status", "slug"),
    [
        ("wrong-secret", 401, "auth-failed"),
        ("missing-signature", 401, "auth-failed"),
        ("skewed-date", 400, "invalid-auth-params"),
        ("malformed-header", 400, "invalid-auth-params"),
    ],
)
def test_authentication_failures(
    official: OfficialClient, server: RunningServer, case: str, status: int, slug: str
) -> None:
    env = server.env()
    if case == "wrong-secret":
        env["BACKEND_SECRET_KEY"] = "definitely-not-the-secret"
    elif case == "missing-signature":
        # An empty access key makes the official client send requests unsigned.
        env["BACKEND_ACCESS_KEY"] = ""
    result = official.run_json("auth_failure.py", env, case)
    assert result["status"] == status
    assert result["type"].endswith(slug)
