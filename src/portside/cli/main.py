"""The ``portside`` command: the server, its database and administration, and a client.

Server side: ``serve``, ``db``, ``admin`` (they read the server's configuration).  Client
side: ``run``, ``ps``, ``session``, ``app``, ``open``, ``vfolder``, ``service`` (they talk to
the API at ``BACKEND_ENDPOINT`` with ``BACKEND_ACCESS_KEY``/``BACKEND_SECRET_KEY``, as the
``backend.ai`` command line does).
"""

from __future__ import annotations

import importlib
from typing import Any

import click
from click.shell_completion import get_completion_class

from portside import __version__

from .client import COMMANDS
from .client.context import DEBUG_KEY
from .client.output import describe_error

_COMPLETE_VAR = "_PORTSIDE_COMPLETE"
_SECTIONS = {
    **dict.fromkeys(("serve", "db", "admin"), "Server commands"),
    **dict.fromkeys(
        ("run", "ps", "session", "app", "open", "vfolder", "service"), "Client commands"
    ),
}


#: The server-side commands, imported only when used: they load the whole server, which a
#: client command does not need.
_SERVER_COMMANDS = {
    "serve": ("portside.cli.serve", "serve"),
    "db": ("portside.cli.db", "db"),
    "admin": ("portside.cli.admin", "admin"),
}


class PortsideGroup(click.Group):
    """The root group: errors from the API or the network become one ``Error:`` line (exit
    1) instead of a traceback, unless ``--debug`` is given."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_SERVER_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _SERVER_COMMANDS and cmd_name not in self.commands:
            module_name, attribute = _SERVER_COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module_name), attribute)
            assert isinstance(command, click.Command)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:
            message = describe_error(e)
            if message is None or ctx.meta.get(DEBUG_KEY):
                raise
            raise click.ClickException(message) from e

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands in sections: the server's, the client's, the rest."""
        sections: dict[str, list[tuple[str, str]]] = {}
        limit = formatter.width - 6 - max(len(name) for name in self.list_commands(ctx))
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            title = _SECTIONS.get(name, "Other commands")
            sections.setdefault(title, []).append((name, command.get_short_help_str(limit)))
        for title in ("Server commands", "Client commands", "Other commands"):
            if title in sections:
                with formatter.section(title):
                    formatter.write_dl(sections[title])


@click.group(cls=PortsideGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="portside")
@click.option(
    "--debug",
    is_flag=True,
    envvar="PORTSIDE_DEBUG",
    help="Show tracebacks and client warnings instead of one-line errors.",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Portside: compute sessions that speak the Backend.AI API.

    \b
    Run a server:      portside serve
    Point a client:    export BACKEND_ENDPOINT=http://127.0.0.1:8090
                       export BACKEND_ACCESS_KEY=... BACKEND_SECRET_KEY=...
    Run code:          portside run python -c 'print("hello")'
    See your sessions: portside ps

    Every command explains itself with --help.
    """
    ctx.meta[DEBUG_KEY] = debug


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]), default="bash")
def completion(shell: str) -> None:
    """Print a shell completion script (bash, zsh or fish).

    \b
    Enable it for this shell:
      eval "$(portside completion bash)"     # bash, in ~/.bashrc
      eval "$(portside completion zsh)"      # zsh, in ~/.zshrc
      portside completion fish > ~/.config/fish/completions/portside.fish
    """
    completion_class = get_completion_class(shell)
    if completion_class is None:
        raise click.ClickException(f"no completion for {shell}")
    click.echo(completion_class(cli, {}, "portside", _COMPLETE_VAR).source())


for command in COMMANDS:
    cli.add_command(command)


def main() -> None:
    cli(prog_name="portside")
