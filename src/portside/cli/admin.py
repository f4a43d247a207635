"""``portside admin``: users, keypairs, resource policies and images (the local operator's tools).

Users, keypairs and policies are changed straight on the database; images are read from the
server's configuration.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from portside.config import Config
from portside.errors import PortsideError
from portside.images import ImageRegistry
from portside.services import identity
from portside.services.platform import Platform

from .client.output import output_option, print_table
from .client.session import human_slots
from .options import build_config, config_options

T = TypeVar("T")


def _run(config: Config, action: Callable[[Platform], Awaitable[T]]) -> T:
    async def run() -> T:
        async with Platform(config).database() as platform:
            return await action(platform)

    try:
        return asyncio.run(run())
    except PortsideError as e:
        raise click.ClickException(str(e)) from e


@click.group()
def admin() -> None:
    """Administer users, keypairs, resource policies and images."""


@admin.group()
def user() -> None:
    """Users."""


@user.command("create")
@config_options
@click.argument("email")
@click.option("--role", type=click.Choice(["user", "admin", "superadmin"]), default="user")
@click.option("--group", "group_name", default="default", help="The project the user joins.")
@click.option("--no-keypair", is_flag=True, help="Create the user without a keypair.")
def user_create(
    config_file: Path | None,
    data_dir: Path | None,
    email: str,
    role: str,
    group_name: str,
    no_keypair: bool,
) -> None:
    """Create a user (and, unless told not to, a keypair for them)."""
    config = build_config(config_file, data_dir)

    async def action(platform: Platform) -> identity.KeyPairInfo | None:
        await identity.create_user(platform, email=email, role=role, group_name=group_name)
        if no_keypair:
            return None
        return await identity.create_keypair(platform, None, email=email, is_admin=role != "user")

    keypair = _run(config, action)
    click.echo(f"Created user {email} ({role}).")
    if keypair is not None:
        click.echo(f"BACKEND_ACCESS_KEY={keypair.access_key}")
        click.echo(f"BACKEND_SECRET_KEY={keypair.secret_key}")


@admin.group()
def keypair() -> None:
    """Keypairs (access and secret keys)."""


@keypair.command("create")
@config_options
@click.argument("email")
@click.option("--admin", "is_admin", is_flag=True, help="Give the keypair administrator rights.")
@click.option("--resource-policy", default="default")
def keypair_create(
    config_file: Path | None,
    data_dir: Path | None,
    email: str,
    is_admin: bool,
    resource_policy: str,
) -> None:
    """Create a keypair for an existing user."""
    config = build_config(config_file, data_dir)
    info = _run(
        config,
        lambda p: identity.create_keypair(
            p, None, email=email, is_admin=is_admin, resource_policy=resource_policy
        ),
    )
    click.echo(f"BACKEND_ACCESS_KEY={info.access_key}")
    click.echo(f"BACKEND_SECRET_KEY={info.secret_key}")


@keypair.command("list")
@config_options
@click.option("--email", help="Only this user's keypairs.")
@click.option("--output", type=click.Choice(["table", "json"]), default="table")
def keypair_list(
    config_file: Path | None, data_dir: Path | None, email: str | None, output: str
) -> None:
    """List keypairs (secret keys are not shown)."""
    config = build_config(config_file, data_dir)

    infos = _run(config, lambda p: identity.list_keypairs(p, None, email=email))
    rows: list[dict[str, Any]] = []
    for info in infos:
        row = info.as_dict()
        row.pop("secret_key")
        rows.append(row)
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("Access key", "User", "Active", "Admin", "Policy", "Created")
    for row in rows:
        table.add_row(
            row["access_key"],
            row["user_id"],
            "yes" if row["is_active"] else "no",
            "yes" if row["is_admin"] else "no",
            row["resource_policy"],
            row["created_at"][:19],
        )
    Console().print(table)


@keypair.command("revoke")
@config_options
@click.argument("access_key")
def keypair_revoke(config_file: Path | None, data_dir: Path | None, access_key: str) -> None:
    """Deactivate a keypair: requests signed with it are refused from now on."""
    config = build_config(config_file, data_dir)
    _run(config, lambda p: identity.revoke_keypair(p, None, access_key))
    click.echo(f"Revoked {access_key}.")


@admin.group()
def policy() -> None:
    """Keypair resource policies: limits on sessions and resources."""


@policy.command("set")
@config_options
@click.argument("name")
@click.option("--slots", help="Resource limits, e.g. cpu=8,mem=32g,cuda.device=1.")
@click.option(
    "--unlisted", type=click.Choice(["LIMITED", "UNLIMITED"]), help="Slots --slots leaves out."
)
@click.option("--max-concurrent-sessions", type=int)
@click.option("--max-session-lifetime", type=int, help="Seconds; 0 means no limit.")
@click.option(
    "--idle-timeout", type=int, help="Seconds; 0 never ends idle sessions, -1 uses the server's."
)
def policy_set(
    config_file: Path | None,
    data_dir: Path | None,
    name: str,
    slots: str | None,
    unlisted: str | None,
    max_concurrent_sessions: int | None,
    max_session_lifetime: int | None,
    idle_timeout: int | None,
) -> None:
    """Create or change a resource policy (keypairs use the one named "default")."""
    config = build_config(config_file, data_dir)
    total = None
    if slots is not None:
        try:
            total = dict(item.split("=", 1) for item in slots.split(",") if item)
        except ValueError:
            raise click.BadParameter(
                "write slots as name=value,name=value", param_hint="--slots"
            ) from None
    change = identity.PolicyChange(
        total_resource_slots=total,
        default_for_unspecified=unlisted,
        max_concurrent_sessions=max_concurrent_sessions,
        max_session_lifetime=max_session_lifetime,
        idle_timeout=idle_timeout,
    )

    result = _run(config, lambda p: identity.set_resource_policy(p, name, change))
    click.echo(json.dumps(result, indent=2))


@policy.command("list")
@config_options
def policy_list(config_file: Path | None, data_dir: Path | None) -> None:
    """Show the resource policies."""
    config = build_config(config_file, data_dir)
    click.echo(json.dumps(_run(config, identity.list_resource_policies), indent=2))


@admin.group()
def image() -> None:
    """Images: what sessions can be created from."""


@image.command("list")
@config_options
@output_option
def image_list(config_file: Path | None, data_dir: Path | None, output: str) -> None:
    """List the images, their aliases, runtimes and apps."""
    config = build_config(config_file, data_dir)
    registry = ImageRegistry(config.images, os.uname().machine)
    rows = [
        {
            "name": img.name,
            "aliases": list(img.aliases),
            "python": img.python,
            "apps": [app.name for app in img.apps],
            "min_cpu": str(img.min_slots.get("cpu", "")),
            "min_mem": str(img.min_slots.get("mem", "")),
            "architecture": img.architecture,
        }
        for img in registry
    ]
    if output == "table":
        for row in rows:
            row["min_mem"] = human_slots({"mem": row["min_mem"]})["mem"]
    columns = [
        ("name", "Name"),
        ("aliases", "Aliases"),
        ("python", "Python"),
        ("apps", "Apps"),
        ("min_cpu", "Min CPU"),
        ("min_mem", "Min memory"),
    ]
    print_table(rows, columns, output=output, empty="No images are configured.")
