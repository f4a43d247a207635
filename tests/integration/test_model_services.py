"""Model services through our SDK: replicas, tokens, scaling without losing requests, failover.

The model server here is Python's ``http.server`` in a model folder, so these tests exercise
the platform (replicas, health checks, the ingress) in seconds; tests/e2e runs the real
example model.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session

from ..harness import DEV_USER, HTTP_MODEL_DEFINITION, RunningServer
from .conftest import config_for


@pytest.fixture
def model_folder(api: Session, tmp_path: Path) -> Iterator[str]:
    name = f"model-{uuid.uuid4().hex[:8]}"
    (tmp_path / "model-definition.yaml").write_text(HTTP_MODEL_DEFINITION)
    api.VFolder.create(name)
    api.VFolder(name).upload(["model-definition.yaml"], basedir=tmp_path)
    yield name
    api.VFolder(name).delete()


@pytest.fixture
def new_service(api: Session, model_folder: str) -> Iterator[Any]:
    created: list[Any] = []

    def create(replicas: int = 1, **kwargs: Any) -> Any:
        kwargs.setdefault("service_name", f"svc-{uuid.uuid4().hex[:8]}")
        kwargs.setdefault("resources", {"cpu": 1, "mem": "256m"})
        service = api.Service.create("python", model_folder, replicas, **kwargs)
        created.append(service)
        return service

    yield create
    for service in created:
        try:
            service.delete()
        except BackendAPIError as e:
            if e.status != 404:
                raise
    # Deleting drains the replicas first; the model folder can go once they are gone.
    for service in created:
        wait_for(lambda s=service: _gone(s), what="the service to be deleted")


def _gone(service: Any) -> bool:
    try:
        service.info()
    except BackendAPIError as e:
        return e.status == 404
    return False


def wait_for(
    predicate: Any, timeout: float = 60, what: str = "condition", service: Any = None
) -> Any:
    """Polls ``predicate`` until it is truthy; a timeout names what the service's routes were."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            routes = service.info()["routes"] if service is not None else None
            raise AssertionError(f"timed out waiting for {what}; routes: {routes}")
        time.sleep(0.3)
    return value


def healthy_routes(service: Any) -> list[dict[str, Any]]:
    return [r for r in service.info()["routes"] if r["status"] == "HEALTHY"]


def test_service_url_needs_a_token_unless_public(new_service: Any) -> None:
    private = new_service()
    url = wait_for(lambda: private.info()["url"], what="a healthy replica", service=private)
    assert private.info()["service_endpoint"] == url
    token = private.generate_api_token("3600s")["token"]
    for scheme in ("BackendAI", "Bearer"):
        ok = requests.get(
            f"{url}/model-definition.yaml",
            headers={"Authorization": f"{scheme} {token}"},
            timeout=10,
        )
        assert ok.status_code == 200
        assert "http-model" in ok.text
    assert requests.get(f"{url}/", timeout=10).status_code == 401
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert (
        requests.get(url, headers={"Authorization": f"Bearer {forged}"}, timeout=10).status_code
        == 401
    )
    expired = private.generate_api_token(valid_until=int(time.time()) + 1)["token"]
    time.sleep(2)
    assert (
        requests.get(url, headers={"Authorization": f"Bearer {expired}"}, timeout=10).status_code
        == 401
    )
    public = new_service(open_to_public=True)
    public_url = wait_for(
        lambda: public.info()["url"], what="a healthy public replica", service=public
    )
    assert requests.get(public_url, timeout=10).status_code == 200
    # One service's token does not open another.
    other = requests.get(f"{public_url}/", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert other.status_code == 200
    assert (
        requests.get(
            url,
            headers={"Authorization": f"Bearer {public.generate_api_token('1h')['token']}"},
            timeout=10,
        ).status_code
        == 401
    )


def test_bad_token_requests_are_refused(new_service: Any) -> None:
    service = new_service()
    for duration in ("-5s", "soon", ""):
        with pytest.raises(BackendAPIError) as e:
            service.generate_api_token(duration)
        assert e.value.status == 400
    with pytest.raises(BackendAPIError) as e:
        service.generate_api_token(valid_until=int(time.time()) - 10)
    assert "expired" in e.value.data["msg"]


def test_missing_or_invalid_model_definition_is_a_400(api: Session, tmp_path: Path) -> None:
    name = f"bad-{uuid.uuid4().hex[:8]}"
    api.VFolder.create(name)
    try:
        with pytest.raises(BackendAPIError) as e:
            api.Service.create("python", name, 1, service_name="nodef-svc")
        assert e.value.status == 400
        assert "model-definition.yaml" in e.value.data["msg"]
        (tmp_path / "model-definition.yaml").write_text("models:\n  - name: x\n    service: {}\n")
        api.VFolder(name).upload(["model-definition.yaml"], basedir=tmp_path)
        with pytest.raises(BackendAPIError) as e:
            api.Service.create("python", name, 1, service_name="baddef-svc")
        assert e.value.status == 400
        assert "model_path" in e.value.data["msg"]
        assert "service.port" in e.value.data["msg"]
    finally:
        api.VFolder(name).delete()


def _hammer(url: str, token: str, stop: threading.Event, results: list[int]) -> None:
    with requests.Session() as http:
        http.headers["Authorization"] = f"BackendAI {token}"
        while not stop.is_set():
            try:
                results.append(http.get(f"{url}/model-definition.yaml", timeout=30).status_code)
            except requests.RequestException:
                results.append(-1)


def test_scaling_up_and_down_loses_no_requests(new_service: Any) -> None:
    service = new_service(1)
    url = wait_for(lambda: service.info()["url"], what="the first replica", service=service)
    token = service.generate_api_token("1h")["token"]
    stop, results = threading.Event(), []
    client = threading.Thread(target=_hammer, args=(url, token, stop, results))
    client.start()
    try:
        assert service.scale(3) == {"current_route_count": 1, "target_count": 3}
        wait_for(
            lambda: len(healthy_routes(service)) == 3,
            what="three healthy replicas",
            service=service,
        )
        service.scale(1)
        wait_for(
            lambda: len(service.info()["routes"]) == 1, what="scaling back to one", service=service
        )
        time.sleep(1)
    finally:
        stop.set()
        client.join(30)
    assert len(results) > 20
    assert set(results) == {200}, {code: results.count(code) for code in set(results)}


def test_a_killed_replica_leaves_the_rotation_and_is_replaced(
    api: Session, new_service: Any
) -> None:
    service = new_service(2)
    url = wait_for(
        lambda: len(healthy_routes(service)) == 2 and service.info()["url"],
        what="two healthy replicas",
        service=service,
    )
    token = service.generate_api_token("1h")["token"]
    before = {r["route_id"] for r in service.info()["routes"]}
    victim = api.ComputeSession.from_session_id(uuid.UUID(healthy_routes(service)[0]["session_id"]))
    stop, results = threading.Event(), []
    client = threading.Thread(target=_hammer, args=(url, token, stop, results))
    client.start()
    try:
        victim.execute(
            None, "import subprocess; subprocess.run(['pkill', '-f', 'http.server'])", mode="query"
        )
        wait_for(
            lambda: (
                len(healthy_routes(service)) == 2
                and {r["route_id"] for r in service.info()["routes"]} != before
            ),
            what="the replacement replica",
            service=service,
        )
    finally:
        stop.set()
        client.join(30)
    assert set(results) == {200}, {code: results.count(code) for code in set(results)}


def test_services_are_private_to_their_owner(server: RunningServer, new_service: Any) -> None:
    service = new_service()
    with Session(config=config_for(server, DEV_USER)) as user_api:
        assert str(service.id) not in {s["id"] for s in user_api.Service.list()}
        with pytest.raises(BackendAPIError) as e:
            user_api.Service(service.id).info()
        assert e.value.status == 404
        with pytest.raises(BackendAPIError):
            user_api.Service(service.id).generate_api_token("1h")


def test_graphql_endpoint_list_filters_by_name(api: Session, new_service: Any) -> None:
    service = new_service()
    name = service["name"]
    result = api.Service.paginated_list(
        fields=["endpoint_id", "name"], filter=f'name == "{name}"', page_size=5
    )
    assert [item["endpoint_id"] for item in result.items] == [str(service.id)]
    detail = api.Service.detail(service.id, fields=["name", "replicas", "open_to_public"])
    assert detail == {"name": name, "replicas": 1, "open_to_public": False}
