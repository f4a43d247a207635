"""``portside vfolder ...``: virtual folders, the storage that outlives sessions.

A folder is mounted into a session with ``portside run/session create -m FOLDER``.  FOLDER
arguments take a folder's name or its id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ai.backend.client.session import AsyncSession

from .context import quiet_option, run_client
from .output import Notices, output_option, print_record, print_table
from .transfer import download_from_folder, upload_to_folder

LIST_COLUMNS = [
    ("name", "Name"),
    ("id", "ID"),
    ("host", "Host"),
    ("usage_mode", "Usage"),
    ("permission", "Permission"),
    ("ownership_type", "Owner"),
    ("status", "Status"),
    ("created_at", "Created"),
]
INFO_FIELDS = [
    ("name", "Name"),
    ("id", "ID"),
    ("host", "Host"),
    ("status", "Status"),
    ("usage_mode", "Usage"),
    ("permission", "Permission"),
    ("ownership_type", "Owner"),
    ("user_email", "User"),
    ("group_name", "Project"),
    ("cloneable", "Cloneable"),
    ("num_files", "Files"),
    ("used_bytes", "Used bytes"),
    ("max_size", "Quota"),
    ("created_at", "Created"),
]


@click.group()
def vfolder() -> None:
    """Virtual folders: storage that outlives sessions."""


@vfolder.command()
@click.argument("name")
@click.argument("host", required=False)
@click.option("-g", "--group", metavar="PROJECT", help="Make it a project folder.")
@click.option(
    "--usage-mode",
    type=click.Choice(["general", "model", "data"]),
    default="general",
    show_default=True,
    help="model: a folder services can serve.",
)
@click.option(
    "-p",
    "--permission",
    type=click.Choice(["rw", "ro", "wd"]),
    default="rw",
    show_default=True,
    help="What sessions may do with it.",
)
@click.option("--quota", help="A size limit, e.g. 10g.")
@click.option("--cloneable", is_flag=True, help="Let others clone it.")
@quiet_option
@output_option
def create(
    name: str,
    host: str | None,
    group: str | None,
    usage_mode: str,
    permission: str,
    quota: str | None,
    cloneable: bool,
    quiet: bool,
    output: str,
) -> None:
    """Create a folder NAME (on HOST, default: the server's default host)."""

    async def work(api: AsyncSession) -> dict[str, Any]:
        result: dict[str, Any] = await api.VFolder.create(
            name,
            host=host,
            group=group,
            usage_mode=usage_mode,
            permission=permission,
            cloneable=cloneable,
            quota=quota,
        )
        return result

    result = run_client(work)
    if output == "json":
        print_record(result, [], output="json")
        return
    Notices(quiet=quiet).done(
        f"Created folder {result.get('name', name)} ({result.get('id', '?')})."
    )


@vfolder.command("list")
@click.option("-a", "--all", "list_all", is_flag=True, help="Every folder (administrators).")
@output_option
def list_(list_all: bool, output: str) -> None:
    """List the folders you can use."""
    rows = run_client(lambda api: api.VFolder.list(list_all=list_all))
    print_table(rows, LIST_COLUMNS, output=output, empty="There are no folders.")


@vfolder.command()
@click.argument("folder")
@output_option
def info(folder: str, output: str) -> None:
    """Show a folder's details."""
    details = run_client(lambda api: api.VFolder(folder).info())
    print_record(details, INFO_FIELDS, output=output)


@vfolder.command()
@click.argument("folder")
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--basedir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="SOURCES are relative to this directory, and keep their paths relative to it in "
    "the folder (default: the current directory).",
)
@click.option("--dst-dir", metavar="PATH", help="A directory in the folder to put them in.")
@click.option("-r", "--recursive", is_flag=True, help="Upload directories with their contents.")
@quiet_option
def upload(
    folder: str,
    sources: tuple[Path, ...],
    basedir: Path | None,
    dst_dir: str | None,
    recursive: bool,
    quiet: bool,
) -> None:
    """Upload files (and directories with -r) into FOLDER."""
    for source in sources:
        if not (basedir / source if basedir else source).exists():
            raise click.BadParameter(f"{source} does not exist", param_hint="SOURCES")

    async def work(api: AsyncSession) -> int:
        return await upload_to_folder(
            api,
            folder,
            sources,
            basedir=basedir,
            dst_dir=dst_dir,
            recursive=recursive,
            quiet=quiet,
        )

    count = run_client(work)
    Notices(quiet=quiet).done(f"Uploaded {count} file(s) to {folder}.")


@vfolder.command()
@click.argument("folder")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The local directory to put them in (an existing file is not overwritten).",
)
@quiet_option
def download(folder: str, paths: tuple[str, ...], dest: Path, quiet: bool) -> None:
    """Download files of FOLDER to the same relative paths under --dest."""

    async def work(api: AsyncSession) -> list[Path]:
        return await download_from_folder(api, folder, paths, dest, quiet=quiet)

    saved = run_client(work)
    Notices(quiet=quiet).done(f"Downloaded {len(saved)} file(s) to {dest}.")


@vfolder.command()
@click.argument("folder")
@click.argument("path", default=".")
@output_option
def ls(folder: str, path: str, output: str) -> None:
    """List the files in a directory of FOLDER (default: its top)."""
    result = run_client(lambda api: api.VFolder(folder).list_files(path))
    items = list(result.get("items") or [])
    columns = [("type", "Type"), ("size", "Size"), ("modified", "Modified"), ("name", "Name")]
    print_table(items, columns, output=output, empty=f"{path} is empty.")


@vfolder.command()
@click.argument("folder")
def rm(folder: str) -> None:
    """Delete FOLDER and everything in it."""
    run_client(lambda api: api.VFolder(folder).delete())
    Notices().done(f"Deleted folder {folder}.")
