"""``portside vfolder ...``: a folder's whole life, with transfers and their progress."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pytest

from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session

from .conftest import CLI, assert_one_line_error


@pytest.fixture
def folder_name(api: Session) -> Iterator[str]:
    name = f"clivf-{uuid.uuid4().hex[:8]}"
    yield name
    try:
        api.VFolder(name).delete()
    except BackendAPIError as e:
        if e.status != 404:
            raise


def test_vfolder_lifecycle(cli: CLI, folder_name: str) -> None:
    created = cli.ok("vfolder", "create", folder_name)
    assert f"Created folder {folder_name}" in created.stderr
    listed = json.loads(cli.ok("vfolder", "list", "-o", "json").stdout)
    mine = [f for f in listed if f["name"] == folder_name]
    assert len(mine) == 1
    assert folder_name in cli.ok("vfolder", "list").stdout

    payload = os.urandom(3 * 1024 * 1024 + 17)
    (cli.cwd / "big.bin").write_bytes(payload)
    (cli.cwd / "tree" / "sub").mkdir(parents=True)
    (cli.cwd / "tree" / "a.txt").write_text("a\n")
    (cli.cwd / "tree" / "sub" / "b.txt").write_text("b\n")
    up = cli.ok("vfolder", "upload", folder_name, "big.bin")
    assert f"Uploading 1 file to {folder_name}" in up.stderr
    assert "100%" in up.stderr
    assert "3.1/3.1 MB" in up.stderr
    tree = cli.ok("vfolder", "upload", folder_name, "tree", "-r")
    assert "Uploading 2 files" in tree.stderr
    assert_one_line_error(cli("vfolder", "upload", folder_name, "tree"), "recursive")

    top = {
        item["name"]: item
        for item in json.loads(cli.ok("vfolder", "ls", folder_name, "-o", "json").stdout)
    }
    assert top["big.bin"]["size"] == len(payload)
    assert "tree" in top
    assert "b.txt" in cli.ok("vfolder", "ls", folder_name, "tree/sub").stdout

    info = json.loads(cli.ok("vfolder", "info", folder_name, "-o", "json").stdout)
    assert info["name"] == folder_name
    assert info["id"] == mine[0]["id"]
    assert folder_name in cli.ok("vfolder", "info", mine[0]["id"]).stdout

    down = cli.ok("vfolder", "download", folder_name, "big.bin", "tree/sub/b.txt", "--dest", "out")
    assert "Downloading big.bin" in down.stderr
    assert "100%" in down.stderr
    assert (cli.cwd / "out" / "big.bin").read_bytes() == payload
    assert (cli.cwd / "out" / "tree" / "sub" / "b.txt").read_text() == "b\n"
    # An existing local file is not overwritten.
    assert_one_line_error(
        cli("vfolder", "download", folder_name, "big.bin", "--dest", "out"), "exists"
    )

    cli.ok("vfolder", "rm", folder_name)
    assert folder_name not in cli.ok("vfolder", "list").stdout


def test_mounted_folder_is_seen_by_run(cli: CLI, folder_name: str) -> None:
    cli.ok("vfolder", "create", folder_name, "-q")
    (cli.cwd / "hello.txt").write_text("from a folder\n")
    cli.ok("vfolder", "upload", folder_name, "hello.txt", "-q")
    code = f"print(open('/home/work/{folder_name}/hello.txt').read(), end='')"
    result = cli.ok("run", "python", "-m", folder_name, "--rm", "-q", "-c", code)
    assert result.stdout == "from a folder\n"


def test_vfolder_errors_are_one_line(cli: CLI, folder_name: str) -> None:
    assert_one_line_error(cli("vfolder", "info", "no-such-folder"), "no-such-folder")
    assert_one_line_error(cli("vfolder", "rm", "no-such-folder"), "no-such-folder")
    cli.ok("vfolder", "create", folder_name, "-q")
    assert_one_line_error(cli("vfolder", "create", folder_name))
    assert_one_line_error(cli("vfolder", "download", folder_name, "missing.txt"), "missing.txt")
