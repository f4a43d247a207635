"""``portside service ...``: a model folder served, scaled, tokened and removed."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import requests

from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session

from ..harness import HTTP_MODEL_DEFINITION
from .conftest import CLI, assert_one_line_error, wait_for


@pytest.fixture
def model_folder(cli: CLI, api: Session) -> Iterator[str]:
    name = f"climodel-{uuid.uuid4().hex[:8]}"
    (cli.cwd / "model").mkdir()
    (cli.cwd / "model" / "model-definition.yaml").write_text(HTTP_MODEL_DEFINITION)
    cli.ok("vfolder", "create", name, "--usage-mode", "model", "-q")
    cli.ok("vfolder", "upload", name, "model-definition.yaml", "--basedir", "model", "-q")
    yield name
    for service in api.Service.list():
        if service["name"].startswith("clisvc-"):
            try:
                api.Service(service["id"]).delete()
            except BackendAPIError as e:
                if e.status != 404:
                    raise
    wait_for(
        lambda: not [s for s in api.Service.list() if s["name"].startswith("clisvc-")],
        what="the services to be deleted",
    )
    api.VFolder(name).delete()


def _service(cli: CLI, name: str) -> dict[str, object]:
    info: dict[str, object] = json.loads(cli.ok("service", "info", name, "-o", "json").stdout)
    return info


def test_service_lifecycle(cli: CLI, model_folder: str) -> None:
    name = f"clisvc-{uuid.uuid4().hex[:6]}"
    created = cli.ok(
        "service", "create", "python", model_folder, "-t", name,
        "-r", "cpu=1", "-r", "mem=256m", "--wait", "-o", "json",
    )  # fmt: skip
    details = json.loads(created.stdout)
    assert details["name"] == name
    assert details["url"]
    assert details["healthy"] == 1
    assert "HEALTHY" in created.stderr  # the replicas' progress while waiting

    table = cli.ok("service", "ls").stdout
    assert name in table
    assert details["endpoint_id"] in table
    listed = json.loads(cli.ok("service", "ls", "-o", "json").stdout)
    mine = [s for s in listed if s["name"] == name]
    assert mine[0]["endpoint_id"] == details["endpoint_id"]
    assert mine[0]["image"].startswith("python")
    again = json.loads(cli.ok("service", "list", "-o", "json").stdout)
    assert [s["endpoint_id"] for s in again if s["name"] == name] == [details["endpoint_id"]]

    info = cli.ok("service", "info", name).stdout
    assert str(details["url"]) in info
    assert _service(cli, str(details["endpoint_id"]))["name"] == name

    token = cli.ok("service", "token", name, "30m").stdout.strip()
    assert token.count(".") == 2  # a JWT, alone on stdout
    url = f"{details['url']}/model-definition.yaml"
    assert requests.get(url, headers={"Authorization": f"BackendAI {token}"}, timeout=10).ok
    assert requests.get(url, timeout=10).status_code == 401

    scaled = cli.ok("service", "scale", name, "2")
    assert "to 2 replica(s)" in scaled.stderr
    wait_for(lambda: _service(cli, name)["healthy"] == 2, what="two healthy replicas")

    removed = cli.ok("service", "rm", name)
    assert f"Deleting service {name}" in removed.stderr


def test_service_errors_are_one_line(cli: CLI, model_folder: str) -> None:
    assert_one_line_error(cli("service", "info", "no-such-service"), "no-such-service")
    assert_one_line_error(cli("service", "rm", str(uuid.uuid4())))
    assert_one_line_error(
        cli("service", "create", "python", "no-such-folder", "-t", "clisvc-nofolder"),
        "no-such-folder",
    )
    assert cli("service", "scale", "whatever", "-1").returncode == 2  # a usage error
