"""``portside ps`` and ``portside session ...``: compute sessions and their files.

SESSION arguments take a session's name or its id.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ai.backend.client.exceptions import BackendError
from ai.backend.client.func.session import ComputeSession
from ai.backend.client.session import AsyncSession

from .context import parse_uuid, quiet_option, run_client
from .output import Notices, format_value, output_option, print_record, print_table
from .session_opts import creation_kwargs, creation_options
from .startup import start_session
from .transfer import download_from_session, upload_to_session

#: What ``ps`` shows without --all: every status a session has before it has ended.
ACTIVE_STATUSES = (
    "PENDING,SCHEDULED,PREPARING,PULLING,PREPARED,CREATING,RUNNING,RUNNING_DEGRADED,"
    "RESTARTING,TERMINATING,ERROR"
)
LIST_FIELDS = ("name", "id", "image", "type", "status", "status_info", "status_changed", "result")
LIST_COLUMNS = [
    ("name", "Name"),
    ("id", "Session ID"),
    ("image", "Image"),
    ("type", "Type"),
    ("status", "Status"),
    ("status_info", "Status info"),
    ("status_changed", "Last updated"),
    ("result", "Result"),
]
INFO_FIELDS = [
    ("sessionName", "Name"),
    ("sessionId", "Session ID"),
    ("image", "Image"),
    ("architecture", "Architecture"),
    ("status", "Status"),
    ("statusInfo", "Status info"),
    ("creationTime", "Created"),
    ("terminationTime", "Terminated"),
    ("occupyingSlots", "Resources"),
    ("resourceOpts", "Resource options"),
    ("mounts", "Mounts"),
    ("apps", "Apps"),
    ("numQueriesExecuted", "Queries"),
    ("isolation", "Isolation"),
    ("tag", "Tag"),
    ("domainName", "Domain"),
]


def compute_session(api: AsyncSession, ref: str) -> ComputeSession:
    """The handle for a session named by ``ref``, a name or an id."""
    session_id = parse_uuid(ref)
    if session_id is not None:
        return api.ComputeSession(id=session_id)
    return api.ComputeSession(ref)


async def session_id_of(api: AsyncSession, ref: str) -> uuid.UUID:
    """The id of the session ``ref`` names (a Backend.AI manager's info has no id: then the
    caller's sessions are searched by name)."""
    session_id = parse_uuid(ref)
    if session_id is not None:
        return session_id
    info = await api.ComputeSession(ref).get_info()
    if info.get("sessionId"):
        return uuid.UUID(str(info["sessionId"]))
    for session in await list_sessions(api, ACTIVE_STATUSES, limit=1000):
        if session.get("name") == ref:
            return uuid.UUID(str(session["id"]))
    raise click.ClickException(f"no running session is named {ref!r}")


async def list_sessions(api: AsyncSession, status: str | None, *, limit: int) -> list[Any]:
    items: list[Any] = []
    while len(items) < limit:
        page = await api.ComputeSession.paginated_list(
            status=status,
            fields=LIST_FIELDS,
            page_offset=len(items),
            page_size=min(100, limit - len(items)),
        )
        items += page.items
        if not page.items or len(items) >= page.total_count:
            break
    return items


def human_slots(slots: Any) -> Any:
    """``{"cpu": "1", "mem": "268435456"}`` with the memory in binary units."""
    if isinstance(slots, str):
        try:
            slots = json.loads(slots)
        except ValueError:
            return slots
    if isinstance(slots, dict) and str(slots.get("mem", "")).isdigit():
        size = float(slots["mem"])
        unit = "B"
        for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
            if size < 1024 or unit == "TiB":
                break
            size /= 1024
        slots = {**slots, "mem": f"{size:g} {unit}"}
    return slots


@click.command("ps")
@click.option("-a", "--all", "show_all", is_flag=True, help="Also list sessions that ended.")
@click.option("--status", help="Only these statuses, comma-separated (e.g. RUNNING,ERROR).")
@click.option("--limit", type=int, default=100, show_default=True, help="List at most this many.")
@output_option
def ps(show_all: bool, status: str | None, limit: int, output: str) -> None:
    """List your sessions (with --all, also the ended ones)."""
    wanted = status or (None if show_all else ACTIVE_STATUSES)
    rows = run_client(lambda api: list_sessions(api, wanted, limit=limit))
    print_table(rows, LIST_COLUMNS, output=output, empty="There are no sessions.")


@click.group()
def session() -> None:
    """Sessions: create, inspect, end; move files in and out."""


session.add_command(ps, "list")


@session.command()
@click.argument("image")
@creation_options
@click.option("--enqueue-only", is_flag=True, help="Return once queued; do not wait for start.")
@quiet_option
@output_option
def create(image: str, enqueue_only: bool, quiet: bool, output: str, **creation: Any) -> None:
    """Start a session of IMAGE (or reuse one of the same --name)."""
    kwargs = creation_kwargs(creation)

    async def work(api: AsyncSession) -> dict[str, Any]:
        compute = await start_session(api, image, quiet=quiet, enqueue_only=enqueue_only, **kwargs)
        return {
            "name": compute.name,
            "id": str(compute.id),
            "status": compute.status,
            "created": compute.created,
            "image": image,
        }

    record = run_client(work)
    fields = [("name", "Name"), ("id", "Session ID"), ("status", "Status"), ("image", "Image")]
    print_record(record, fields, output=output)


@session.command()
@click.argument("ref", metavar="SESSION")
@output_option
def info(ref: str, output: str) -> None:
    """Show a session's details."""

    async def work(api: AsyncSession) -> dict[str, Any]:
        compute = compute_session(api, ref)
        details: dict[str, Any] = await compute.get_info()
        try:
            details["apps"] = [app["name"] for app in await compute.stream_app_info()]
        except BackendError:
            pass
        return details

    details = run_client(work)
    if output == "table":
        details["occupyingSlots"] = human_slots(details.get("occupyingSlots"))
    print_record(details, INFO_FIELDS, output=output)


@session.command()
@click.argument("refs", metavar="SESSION...", nargs=-1, required=True)
@click.option("-f", "--forced", is_flag=True, help="End it even if it is busy or stuck.")
@click.option("-r", "--recursive", is_flag=True, help="Also end the sessions that depend on it.")
def rm(refs: tuple[str, ...], forced: bool, recursive: bool) -> None:
    """Destroy sessions."""

    async def work(api: AsyncSession) -> None:
        for ref in refs:
            await compute_session(api, ref).destroy(forced=forced, recursive=recursive)
            Notices().done(f"Destroyed session {ref}.")

    run_client(work)


@session.command()
@click.argument("ref", metavar="SESSION")
def restart(ref: str) -> None:
    """Restart a session's kernel (variables are lost, files kept)."""
    run_client(lambda api: compute_session(api, ref).restart())
    Notices().done(f"Restarted session {ref}.")


@session.command()
@click.argument("ref", metavar="SESSION")
@click.argument("new_name")
def rename(ref: str, new_name: str) -> None:
    """Give a running session a new name."""
    run_client(lambda api: compute_session(api, ref).rename(new_name))
    Notices().done(f"Renamed session {ref} to {new_name}.")


@session.command()
@click.argument("ref", metavar="SESSION")
@click.option("--kernel", metavar="KERNEL_ID", help="A kernel other than the main one.")
def logs(ref: str, kernel: str | None) -> None:
    """Print what a session's kernel wrote to its console."""
    result = run_client(lambda api: compute_session(api, ref).get_logs(kernel))
    text = str((result.get("result") or {}).get("logs") or "")
    click.echo(text, nl=not text.endswith("\n"))


@session.command()
@click.argument("ref", metavar="SESSION")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--basedir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Files keep their paths relative to this directory (default: the current one).",
)
@quiet_option
def upload(ref: str, files: tuple[str, ...], basedir: Path | None, quiet: bool) -> None:
    """Upload FILES into a session's working directory."""

    async def work(api: AsyncSession) -> None:
        await upload_to_session(compute_session(api, ref), files, basedir=basedir, quiet=quiet)

    run_client(work)
    Notices(quiet=quiet).done(f"Uploaded {len(files)} file(s) to {ref}.")


@session.command()
@click.argument("ref", metavar="SESSION")
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The local directory to put them in.",
)
@quiet_option
def download(ref: str, files: tuple[str, ...], dest: Path, quiet: bool) -> None:
    """Download FILES (relative to /home/work) from a session."""

    async def work(api: AsyncSession) -> list[str]:
        compute = compute_session(api, ref)
        return await download_from_session(api, compute, files, dest, quiet=quiet)

    names = run_client(work)
    Notices(quiet=quiet).done(f"Downloaded {', '.join(names) or 'nothing'} to {dest}.")


@session.command()
@click.argument("ref", metavar="SESSION")
@click.argument("path", default=".")
@output_option
def ls(ref: str, path: str, output: str) -> None:
    """List files in a session (default: /home/work)."""
    result = run_client(lambda api: compute_session(api, ref).list_files(path))
    files = result.get("files", [])
    if isinstance(files, str):
        files = json.loads(files)
    if result.get("errors"):
        raise click.ClickException(str(result["errors"]))
    columns = [("mode", "Mode"), ("size", "Size"), ("mtime_text", "Modified"), ("filename", "Name")]
    if output == "table":
        for item in files:
            item["mtime_text"] = format_value(_timestamp(item.get("mtime")))
    print_table(files, columns, output=output, empty=f"{path} is empty.")


def _timestamp(value: Any) -> str | None:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).isoformat()
    return None if value is None else str(value)


@session.command()
@click.argument("ref", metavar="SESSION")
@click.option("--scope", default="*", show_default=True, help="Which events: session, kernel, *.")
@output_option
def events(ref: str, scope: str, output: str) -> None:
    """Follow a session's lifecycle events until it ends.

    With --output json, each event is one JSON object per line.
    """

    async def work(api: AsyncSession) -> None:
        async with compute_session(api, ref).listen_events(scope) as stream:
            Notices().info(f"Following the events of session {ref} (Ctrl-C to stop).")
            async for message in stream:
                try:
                    data = json.loads(message.data) if message.data else {}
                except ValueError:
                    data = {"data": message.data}
                if output == "json":
                    click.echo(json.dumps({"event": message.event, **data}))
                else:
                    status = data.get("status") or ""
                    reason = data.get("reason") or ""
                    click.echo(f"{message.event:<22} {status:<12} {reason}".rstrip())

    run_client(work)
