"""Virtual folders through our SDK against a real server: files, quotas, transfers, mounts."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session

from ..harness import REPO, RunningServer
from .conftest import run
from .vfolder_helpers import delete_folder, folder_fixture, user_api_fixture  # noqa: F401

Folder = Callable[..., str]


def test_folder_lifecycle_and_files(
    api: Session, folder: Folder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = folder()
    assert name in [f["name"] for f in api.VFolder.list()]
    info = api.VFolder(name).info()
    assert (info["name"], info["host"], info["permission"], info["numFiles"]) == (
        name,
        "local",
        "rw",
        0,
    )
    (tmp_path / "data.bin").write_bytes(os.urandom(300_000))
    (tmp_path / "tree" / "inner").mkdir(parents=True)
    (tmp_path / "tree" / "inner" / "leaf.txt").write_text("leaf")
    monkeypatch.chdir(tmp_path)
    vf = api.VFolder(name)
    vf.upload(["data.bin"], chunk_size=64 * 1024)
    vf.upload(["tree"], recursive=True)
    listing = {item["name"]: item for item in vf.list_files(".")["items"]}
    assert listing["data.bin"]["size"] == 300_000
    assert listing["tree"]["type"] == "DIRECTORY"
    assert [i["name"] for i in vf.list_files("tree/inner")["items"]] == ["leaf.txt"]
    assert vf.mkdir("made/deep", parents=True) == {
        "success": [{"item": "made/deep", "msg": None}],
        "failed": [],
    }
    vf.rename_file("data.bin", "renamed.bin")
    vf.move_file("renamed.bin", "made")
    (tmp_path / "out").mkdir()
    vf.download(["made/renamed.bin"], basedir=tmp_path / "out")
    assert (tmp_path / "out/made/renamed.bin").read_bytes() == (tmp_path / "data.bin").read_bytes()
    vf.delete_files(["made"], recursive=True)
    with pytest.raises(BackendAPIError) as e:
        vf.delete_files(["tree"])
    assert e.value.status == 400
    assert "not empty" in str(e.value.data)
    assert sorted(i["name"] for i in vf.list_files()["items"]) == ["tree"]
    assert vf.info()["numFiles"] == 1
    page = api.VFolder.paginated_list()
    assert name in [item["name"] for item in page.items]
    new_name = name + "-b"
    api.VFolder(name).rename(new_name)
    with pytest.raises(BackendAPIError) as e:
        api.VFolder(name).info()
    assert e.value.status == 404
    api.VFolder(new_name).rename(name)
    api.VFolder(name).delete()
    with pytest.raises(BackendAPIError) as e:
        api.VFolder(name).info()
    assert e.value.status == 404


def test_a_full_quota_refuses_uploads_with_a_clear_error(
    api: Session, folder: Folder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = folder(quota="64k")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.bin").write_bytes(b"x" * 40_000)
    (tmp_path / "big.bin").write_bytes(b"x" * 30_000)
    api.VFolder(name).upload(["small.bin"])
    with pytest.raises(BackendAPIError) as e:
        api.VFolder(name).upload(["big.bin"])
    assert e.value.status == 412
    message = e.value.data["msg"]
    assert name in message
    assert "64.0 KiB" in message
    assert "big.bin" in message
    # Replacing a file counts only the difference.
    (tmp_path / "small.bin").write_bytes(b"y" * 60_000)
    api.VFolder(name).upload(["small.bin"])
    assert api.VFolder(name).info()["used_bytes"] == 60_000


def test_one_session_reads_what_another_wrote(
    api: Session, folder: Folder, new_session: Any, tmp_path: Path
) -> None:
    name = folder()
    writer = new_session(mounts=[name])
    code = f"open('/home/work/{name}/note.txt', 'w').write('from the first session')"
    assert run(writer, code)[3] == 0
    reader = new_session(mounts=[name])
    assert run(reader, f"print(open('/home/work/{name}/note.txt').read())")[0] == (
        "from the first session\n"
    )
    # Another session (another uid) may change it too, and the API sees the result.
    assert run(reader, f"open('/home/work/{name}/note.txt', 'a').write('!')")[3] == 0
    api.VFolder(name).download(["note.txt"], basedir=tmp_path)
    assert (tmp_path / "note.txt").read_text() == "from the first session!"
    # A folder in use stays until its sessions are gone.
    with pytest.raises(BackendAPIError) as e:
        api.VFolder(name).delete()
    assert e.value.status == 409
    assert reader.name in e.value.data["msg"]


def test_an_admin_mounts_the_owners_folders_in_a_session_for_them(
    api: Session, user_api: Session, folder: Folder, new_session: Any
) -> None:
    mine, theirs = folder(), folder(owner=user_api)
    owner_key = user_api.config.access_key
    compute = new_session(mounts=[theirs], owner_access_key=owner_key)
    assert run(compute, f"import os; print(os.path.isdir('/home/work/{theirs}'))")[0] == "True\n"
    with pytest.raises(BackendAPIError) as e:
        new_session(mounts=[mine], owner_access_key=owner_key)
    assert e.value.status == 404


@pytest.mark.parametrize("how", ["mount-option", "folder-permission"])
def test_a_read_only_mount_refuses_writes(
    api: Session, folder: Folder, new_session: Any, how: str
) -> None:
    if how == "mount-option":
        name = folder()
        compute = new_session(mounts=[name], mount_options={name: {"permission": "ro"}})
    else:
        name = folder(permission="ro")
        compute = new_session(mounts=[name])
    _, stderr, _, code = run(compute, f"open('/home/work/{name}/x', 'w')")
    assert code != 0
    assert "Read-only file system" in stderr
    assert run(compute, f"import os; print(os.listdir('/home/work/{name}'))")[0] == "[]\n"


def test_a_read_only_folder_cannot_be_mounted_read_write(
    api: Session, folder: Folder, new_session: Any
) -> None:
    name = folder(permission="ro")
    with pytest.raises(BackendAPIError) as e:
        new_session(mounts=[name], mount_options={name: {"permission": "rw"}})
    assert e.value.status == 403
    assert name in e.value.data["msg"]


def test_mount_map_aliases(api: Session, folder: Folder, new_session: Any) -> None:
    first, second = folder(), folder()
    compute = new_session(
        mounts=[first, second], mount_map={first: "data", second: "/workspace/models"}
    )
    code = "import os; print(os.path.isdir('/home/work/data'), os.path.isdir('/workspace/models'))"
    assert run(compute, code)[0] == "True True\n"
    for alias, words in [("/etc/x", "reserved"), (".ssh", "reserved"), ("../x", "..")]:
        with pytest.raises(BackendAPIError) as e:
            new_session(mounts=[first], mount_map={first: alias})
        assert e.value.status == 400, e.value.data
        assert words in e.value.data["msg"], e.value.data


def test_sub_path_mounts_and_ids(api: Session, folder: Folder, new_session: Any) -> None:
    name = folder()
    api.VFolder(name).mkdir("sub/dir", parents=True)
    folder_id = api.VFolder(name).get_id()
    compute = new_session(mounts=[f"{name}/sub", folder_id.hex], mount_map={folder_id.hex: "whole"})
    code = f"import os; print(os.listdir('/home/work/{name}'), os.listdir('/home/work/whole'))"
    assert run(compute, code)[0] == "['dir'] ['sub']\n"


def test_dot_folders_are_mounted_without_asking(
    api: Session, folder: Folder, new_session: Any
) -> None:
    name = folder(name=f".tool-{uuid.uuid4().hex[:6]}")
    api.VFolder(name).mkdir("bin")
    compute = new_session()
    assert run(compute, f"import os; print(os.listdir('/home/work/{name}'))")[0] == "['bin']\n"


def test_unknown_folders_are_404_and_name_the_folder(new_session: Any) -> None:
    with pytest.raises(BackendAPIError) as e:
        new_session(mounts=["no-such-folder"])
    assert e.value.status == 404
    assert "no-such-folder" in e.value.data["msg"]


def test_project_folders_follow_their_permission(
    api: Session, user_api: Session, folder: Folder, tmp_path: Path
) -> None:
    name = folder(group="default", permission="ro")
    assert name in [f["name"] for f in user_api.VFolder.list()]
    assert user_api.VFolder(name).info()["ownership_type"] == "group"
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(BackendAPIError) as e:
        user_api.VFolder(name).upload(["f.txt"], basedir=tmp_path)
    assert e.value.status == 403
    api.VFolder(name).upload(["f.txt"], basedir=tmp_path)
    user_api.VFolder(name).download(["f.txt"], basedir=tmp_path / "got")
    assert (tmp_path / "got/f.txt").read_text() == "x"
    with pytest.raises(BackendAPIError) as e:
        user_api.VFolder.create(f"p-{uuid.uuid4().hex[:6]}", "local", group="default")
    assert e.value.status == 403


def test_the_create_example_runs_with_its_folders(
    api: Session, server: RunningServer, tmp_path: Path
) -> None:
    """examples/05_create_destroy.py, unchanged, once "mydata" and "mymodel" exist."""
    existing = {f["name"] for f in api.VFolder.list()}
    made = [n for n in ("mydata", "mymodel") if n not in existing]
    for name in made:
        api.VFolder.create(name, "local")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
        env.update(server.env())
        proc = subprocess.run(
            [sys.executable, str(REPO / "examples/05_create_destroy.py")],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stderr
        assert uuid.UUID(proc.stdout.strip())
    finally:
        for name in made:
            delete_folder(api, name)
