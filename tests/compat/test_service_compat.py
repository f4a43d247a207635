"""The official ``backend.ai service`` commands, unchanged, against Portside's model services."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import requests

from ai.backend.client.config import APIConfig
from ai.backend.client.session import Session

from ..harness import DEV_ADMIN, HTTP_MODEL_DEFINITION, RunningServer
from .conftest import OfficialClient


def _cli(official: OfficialClient, server: RunningServer, cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
    env.update(server.env())
    proc = subprocess.run(
        [str(official.cli), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"backend.ai {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def test_service_commands(official: OfficialClient, server: RunningServer, tmp_path: Path) -> None:
    config = APIConfig(endpoint=server.api_url, access_key=DEV_ADMIN[0], secret_key=DEV_ADMIN[1])
    folder = f"model-{uuid.uuid4().hex[:8]}"
    name = f"svc-{uuid.uuid4().hex[:8]}"
    (tmp_path / "model-definition.yaml").write_text(HTTP_MODEL_DEFINITION)
    with Session(config=config) as api:
        api.VFolder.create(folder)
        api.VFolder(folder).upload(["model-definition.yaml"], basedir=tmp_path)
        try:
            created = _cli(
                official,
                server,
                tmp_path,
                "service",
                "create",
                "python",
                folder,
                "1",
                "-t",
                name,
                "-r",
                "cpu=1",
                "-r",
                "mem=256m",
            )
            service_id = next(s["id"] for s in api.Service.list() if s["name"] == name)
            assert service_id in created or name in created
            deadline = time.monotonic() + 60
            while not (url := api.Service(service_id).info()["url"]):
                assert time.monotonic() < deadline, "the service never became healthy"
                time.sleep(0.5)
            # ("ls" in the words; both official CLIs name the command "list".)
            assert name in _cli(official, server, tmp_path, "service", "list")
            info = _cli(official, server, tmp_path, "service", "info", name)
            assert url in info
            token_output = _cli(
                official, server, tmp_path, "service", "generate-token", name, "3600s", "-q"
            )
            token = token_output.strip().splitlines()[-1].strip()
            ok = requests.get(
                f"{url}/model-definition.yaml",
                headers={"Authorization": f"BackendAI {token}"},
                timeout=10,
            )
            assert ok.status_code == 200
            _cli(official, server, tmp_path, "service", "scale", name, "2")
            assert api.Service(service_id).info()["replicas"] == 2
            _cli(official, server, tmp_path, "service", "rm", name)
            _wait_gone(api, name)
        finally:
            for service in api.Service.list():
                if service["name"] == name:
                    api.Service(service["id"]).delete()
            _wait_gone(api, name)
            api.VFolder(folder).delete()


def _wait_gone(api: Session, name: str) -> None:
    """Deleting drains the replicas first; the service is gone once nothing lists it."""
    deadline = time.monotonic() + 60
    while any(s["name"] == name for s in api.Service.list()):
        assert time.monotonic() < deadline, f"the service {name} was never removed"
        time.sleep(0.5)
