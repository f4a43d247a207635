"""The command tree itself: help, version, completion, and the server-side image list."""

from __future__ import annotations

import json
import subprocess
import sys

from portside import __version__

from ..harness import RunningServer
from .conftest import CLI

GROUPS = ("serve", "db", "admin", "run", "ps", "session", "app", "open", "vfolder", "service")


def test_help_shows_every_group(cli: CLI) -> None:
    text = cli.ok("--help").stdout
    for heading in ("Server commands:", "Client commands:", "Other commands:"):
        assert heading in text
    listed = {
        line.split()[0] for line in text.splitlines() if line.startswith("  ") and line[2] != " "
    }
    assert set(GROUPS) | {"completion"} <= listed
    for group in ("session", "vfolder", "service", "admin"):
        assert "Commands:" in cli.ok(group, "--help").stdout
    session_help = cli.ok("session", "--help").stdout
    for command in ("create", "info", "rm", "restart", "rename", "logs", "upload", "download"):
        assert f"  {command} " in session_help
    assert "image" in cli.ok("admin", "--help").stdout


def test_version(cli: CLI) -> None:
    assert cli.ok("--version").stdout.strip() == f"portside, version {__version__}"


def test_completion_scripts(cli: CLI) -> None:
    bash = cli.ok("completion", "bash").stdout
    assert "_PORTSIDE_COMPLETE=bash_complete" in bash
    assert "complete " in bash
    assert "_PORTSIDE_COMPLETE=zsh_complete" in cli.ok("completion", "zsh").stdout
    assert "_PORTSIDE_COMPLETE=fish_complete" in cli.ok("completion", "fish").stdout
    # What the script asks for: the commands that complete a partial word.
    env = {**cli.env, "_PORTSIDE_COMPLETE": "bash_complete", "COMP_WORDS": "portside se",
           "COMP_CWORD": "1"}  # fmt: skip
    proposed = subprocess.run(
        [sys.executable, "-m", "portside"], env=env, capture_output=True, text=True, timeout=60
    ).stdout
    assert "plain,serve" in proposed
    assert "plain,session" in proposed
    assert "plain,service" in proposed


def test_admin_image_list(cli: CLI, server: RunningServer) -> None:
    args = [
        "--config",
        str(server.data_dir / "portside-test.toml"),
        "--data-dir",
        str(server.data_dir),
    ]
    table = cli.ok("admin", "image", "list", *args).stdout
    for name in ("python:latest", "python:3.9-ubuntu20.04", "python:3.6-ubuntu18.04"):
        assert name in table
    images = json.loads(cli.ok("admin", "image", "list", *args, "-o", "json").stdout)
    latest = [i for i in images if i["name"] == "python:latest"]
    assert "python" in latest[0]["aliases"]
