"""Options shared by the commands that read the server's configuration."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from portside.config import Config, ConfigError, load_config

F = TypeVar("F", bound=Callable[..., Any])


def config_options(func: F) -> F:
    func = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="PORTSIDE_DATA_DIR",
        help="Where the database, sessions and folders live.",
    )(func)
    func = click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        envvar="PORTSIDE_CONFIG",
        help="A TOML configuration file.",
    )(func)
    return func


def build_config(config_file: Path | None, data_dir: Path | None, **overrides: Any) -> Config:
    try:
        return load_config(config_file, data_dir=data_dir, **overrides)
    except ConfigError as e:
        raise click.ClickException(str(e)) from e
