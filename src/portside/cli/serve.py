"""``portside serve``: the all-in-one server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from portside.logs import setup_logging
from portside.server import ServerInfo
from portside.server import serve as run_server

from .options import build_config, config_options


def _banner(info: ServerInfo) -> None:
    click.echo(f"Portside is serving the Backend.AI API at {info.api_url}")
    click.echo(f"App proxy (wsproxy_addr): {info.appproxy_url}")
    click.echo(f"Administrator credentials: {info.env_file}")
    click.echo(f"Kernel isolation: {info.isolation}")
    if info.isolation.startswith("process"):
        click.secho(
            "WARNING: kernels are NOT sandboxed on this machine (see the log for why).",
            fg="red",
            bold=True,
        )
    click.echo("Point a Backend.AI client here, then run the examples:")
    click.echo(f"    source {info.env_file}")
    click.echo("    python examples/01_implicit_config.py")
    click.echo("Press Ctrl-C to stop.", err=False)


@click.command()
@config_options
@click.option("--host", help="API listen address (default 127.0.0.1).")
@click.option("--port", type=int, help="API listen port (default 8090; 0 picks a free one).")
@click.option("--proxy-port", type=int, help="App proxy listen port (default 8091; 0: any).")
@click.option("--dev", is_flag=True, default=None, help="Seed Backend.AI's example keypairs.")
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Log verbosity."
)
def serve(
    config_file: Path | None,
    data_dir: Path | None,
    host: str | None,
    port: int | None,
    proxy_port: int | None,
    dev: bool | None,
    log_level: str | None,
) -> None:
    """Run the API server, app proxy and local agent in this process."""
    config = build_config(config_file, data_dir, dev=dev, log_level=log_level)
    if host is not None:
        config.api.host = host
    if port is not None:
        config.api.port = port
    if proxy_port is not None:
        config.appproxy.port = proxy_port
    setup_logging(config.log_level, config.log_format)
    try:
        asyncio.run(run_server(config, on_ready=_banner))
    except OSError as e:
        raise click.ClickException(f"cannot start the server: {e}") from e
