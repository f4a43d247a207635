"""The options that say how a session is created, shared by ``run`` and ``session create``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from .context import parse_pairs

F = TypeVar("F", bound=Callable[..., Any])


def creation_options(func: F) -> F:
    """Adds the session-creation options (names as in ``backend.ai run``/``create``)."""
    options = [
        click.option(
            "-t",
            "--name",
            metavar="NAME",
            help="The session's name (4-64 characters); a running one of that name is reused.",
        ),
        click.option(
            "--type",
            "session_type",
            type=click.Choice(["interactive", "batch"]),
            default="interactive",
            show_default=True,
            help="Batch sessions run --startup-command and end.",
        ),
        click.option("--startup-command", metavar="CMD", help="What a batch session runs."),
        click.option(
            "-r",
            "--resources",
            metavar="KEY=VAL",
            multiple=True,
            help="Resources, e.g. -r cpu=2 -r mem=1g (repeatable).",
        ),
        click.option("--resource-opts", metavar="KEY=VAL", multiple=True, help="e.g. shmem=64m."),
        click.option(
            "-e", "--env", metavar="KEY=VAL", multiple=True, help="An environment variable."
        ),
        click.option(
            "-m",
            "-v",
            "--mount",
            metavar="FOLDER[:PATH]",
            multiple=True,
            help="Mount a virtual folder (at /home/work/FOLDER, or at PATH).",
        ),
        click.option("--tag", help="A free-form tag."),
        click.option("-g", "--group", metavar="PROJECT", help="The project (BACKEND_GROUP)."),
        click.option("-d", "--domain", metavar="DOMAIN", help="The domain (BACKEND_DOMAIN)."),
        click.option(
            "--max-wait",
            type=int,
            default=0,
            metavar="SECONDS",
            help="How long to wait for the session to start (0: the server's limit).",
        ),
        click.option(
            "--no-reuse", is_flag=True, help="Fail instead of reusing a session of that name."
        ),
        click.option(
            "--bootstrap-script",
            type=click.File("r"),
            help="A shell script run when the session starts.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def creation_kwargs(values: dict[str, Any]) -> dict[str, Any]:
    """The parsed options as ``ComputeSession.get_or_create`` keyword arguments."""
    mounts: list[str] = []
    mount_map: dict[str, str] = {}
    for spec in values["mount"]:
        folder, _, path = spec.partition(":")
        mounts.append(folder)
        if path:
            mount_map[folder] = path
    script = values["bootstrap_script"]
    return {
        "name": values["name"],
        "type_": values["session_type"],
        "startup_command": values["startup_command"],
        "resources": parse_pairs(values["resources"], "--resources"),
        "resource_opts": parse_pairs(values["resource_opts"], "--resource-opts"),
        "envs": parse_pairs(values["env"], "--env"),
        "mounts": mounts,
        "mount_map": mount_map,
        "tag": values["tag"],
        "group_name": values["group"],
        "domain_name": values["domain"],
        "max_wait": values["max_wait"],
        "no_reuse": values["no_reuse"],
        "bootstrap_script": script.read() if script is not None else None,
    }
