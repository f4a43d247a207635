"""``portside service ...``: model services, a model folder served by replicas behind a URL.

The model folder holds a ``model-definition.yaml`` that says how to start the model server.
SERVICE arguments take a service's name or its id.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import click

from ai.backend.client.func.service import Service
from ai.backend.client.session import AsyncSession

from .context import parse_pairs, parse_uuid, quiet_option, run_client
from .output import Notices, output_option, print_record, print_table
from .progress import StatusLine

LIST_FIELDS = (
    "endpoint_id",
    "name",
    "image_object { name }",
    "replicas",
    "routings { routing_id session status traffic_ratio }",
    "url",
    "open_to_public",
)
LIST_COLUMNS = [
    ("name", "Name"),
    ("endpoint_id", "Service ID"),
    ("image", "Image"),
    ("replicas", "Replicas"),
    ("healthy", "Healthy"),
    ("url", "URL"),
    ("open_to_public", "Public"),
]
INFO_FIELDS = [
    ("name", "Name"),
    ("endpoint_id", "Service ID"),
    ("status", "Status"),
    ("replicas", "Replicas"),
    ("healthy", "Healthy"),
    ("service_endpoint", "URL"),
    ("is_public", "Public"),
    ("runtime_variant", "Runtime"),
    ("model_id", "Model folder"),
    ("model_definition_path", "Model definition"),
    ("routes", "Routes"),
]


async def service_handle(api: AsyncSession, ref: str) -> Service:
    """The service ``ref`` names (an id, or a name looked up in your services)."""
    service_id = parse_uuid(ref)
    if service_id is None:
        page = await api.Service.paginated_list(
            fields=["endpoint_id", "name"], filter=f'name == "{ref}"', page_size=100
        )
        matches = [item for item in page.items if item.get("name") == ref]
        if not matches:
            raise click.ClickException(f"there is no service named {ref!r}")
        service_id = uuid.UUID(str(matches[0]["endpoint_id"]))
    return api.Service(service_id)


def _healthy(routes: Any) -> int:
    return sum(1 for r in routes or [] if str(r.get("status", "")).upper() == "HEALTHY")


@click.group()
def service() -> None:
    """Model services: a model folder served behind a URL."""


@service.command()
@click.argument("image")
@click.argument("model_folder")
@click.argument("count", type=int, default=1, required=False)
@click.option("-t", "--name", metavar="NAME", help="The service's name (4-24 characters).")
@click.option("-r", "--resources", metavar="KEY=VAL", multiple=True, help="Per replica.")
@click.option("-e", "--env", metavar="KEY=VAL", multiple=True, help="An environment variable.")
@click.option("--public", is_flag=True, help="Take requests without a token.")
@click.option("--model-definition-path", metavar="PATH", help="Not model-definition.yaml.")
@click.option("--wait", is_flag=True, help="Return once a replica is healthy.")
@click.option("--timeout", type=float, default=300, show_default=True, help="For --wait.")
@quiet_option
@output_option
def create(
    image: str,
    model_folder: str,
    count: int,
    name: str | None,
    resources: tuple[str, ...],
    env: tuple[str, ...],
    public: bool,
    model_definition_path: str | None,
    wait: bool,
    timeout: float,
    quiet: bool,
    output: str,
) -> None:
    """Serve MODEL_FOLDER with COUNT (default 1) replicas of IMAGE."""

    async def work(api: AsyncSession) -> dict[str, Any]:
        created: Service = await api.Service.create(
            image,
            model_folder,
            count,
            service_name=name,
            resources=parse_pairs(resources, "--resources") or None,
            envs=parse_pairs(env, "--env") or None,
            open_to_public=public,
            model_definition_path=model_definition_path,
        )
        if wait:
            return await _wait_healthy(created, timeout, quiet)
        return dict(created)

    result = run_client(work)
    Notices(quiet=quiet).done(f"Created service {result.get('name')} ({result['endpoint_id']}).")
    _print_service(result, output)


def _print_service(details: dict[str, Any], output: str) -> None:
    routes = details.get("routes") or details.get("active_routes") or []
    details["healthy"] = _healthy(routes)
    if output == "table":
        details["routes"] = [f"{r.get('route_id')} {r.get('status', '')}".strip() for r in routes]
    print_record(details, INFO_FIELDS, output=output)


async def _wait_healthy(created: Service, timeout: float, quiet: bool) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with StatusLine("Waiting for a healthy replica", quiet=quiet) as status:
        while True:
            details: dict[str, Any] = await created.info()
            routes = details.get("routes") or details.get("active_routes") or []
            states = ", ".join(str(r.get("status", "?")) for r in routes) or "no replicas yet"
            status.update(f"Replicas: {states}")
            if details.get("url"):
                return details
            if time.monotonic() > deadline:
                raise click.ClickException(f"no replica became healthy in {timeout:g} s")
            await asyncio.sleep(1)


@service.command("ls")
@output_option
def ls(output: str) -> None:
    """List your services."""

    async def work(api: AsyncSession) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while True:
            page = await api.Service.paginated_list(
                fields=LIST_FIELDS, page_offset=len(rows), page_size=100
            )
            rows += page.items
            if not page.items or len(rows) >= page.total_count:
                return rows

    rows = run_client(work)
    for row in rows:
        row["image"] = (row.pop("image_object", None) or {}).get("name")
        row["healthy"] = _healthy(row.get("routings"))
    print_table(rows, LIST_COLUMNS, output=output, empty="There are no services.")


service.add_command(ls, "list")


@service.command()
@click.argument("ref", metavar="SERVICE")
@output_option
def info(ref: str, output: str) -> None:
    """Show a service's details and replicas."""

    async def work(api: AsyncSession) -> dict[str, Any]:
        details: dict[str, Any] = await (await service_handle(api, ref)).info()
        return details

    _print_service(run_client(work), output)


@service.command()
@click.argument("ref", metavar="SERVICE")
@click.argument("count", type=click.IntRange(min=0))
def scale(ref: str, count: int) -> None:
    """Change the number of replicas to COUNT."""

    async def work(api: AsyncSession) -> dict[str, Any]:
        result: dict[str, Any] = await (await service_handle(api, ref)).scale(count)
        return result

    result = run_client(work)
    current = result.get("current_route_count", "?")
    Notices().done(f"Scaling service {ref} from {current} to {count} replica(s).")


@service.command()
@click.argument("ref", metavar="SERVICE")
@click.argument("duration", default="1h")
def token(ref: str, duration: str) -> None:
    """Print a new API token for SERVICE, valid for DURATION (default 1h; e.g. 30m, 7d)."""

    async def work(api: AsyncSession) -> dict[str, Any]:
        result: dict[str, Any] = await (await service_handle(api, ref)).generate_api_token(duration)
        return result

    click.echo(run_client(work)["token"])


@service.command()
@click.argument("ref", metavar="SERVICE")
def rm(ref: str) -> None:
    """Delete a service (its replicas are drained first)."""

    async def work(api: AsyncSession) -> None:
        await (await service_handle(api, ref)).delete()

    run_client(work)
    Notices().done(f"Deleting service {ref}.")
