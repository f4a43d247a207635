"""Virtual folders keep to themselves: no path leaves its folder, nobody sees another's folder.

The server often runs as root and touches folder contents that sessions can change, so every
API that takes a path is tried with ``..``, absolute paths and symbolic links a session made.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.request import Request
from ai.backend.client.session import Session

from .conftest import run
from .vfolder_helpers import folder_fixture, user_api_fixture  # noqa: F401

Folder = Callable[..., str]
ESCAPES = ["../x", "../../etc/passwd", "/etc/passwd", "a/../../x", "./../x"]


def call(api: Session, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One signed request with a JSON body, for calls the SDK shapes for us otherwise."""

    async def go() -> Any:
        rqst = Request(method, path, session=api)
        if body is not None:
            rqst.set_json(body)
        async with rqst.fetch() as resp:
            return await resp.json()

    return api.run(go())


def refused(status: int, action: Callable[[], Any], *words: str) -> dict[str, Any]:
    with pytest.raises(BackendAPIError) as e:
        action()
    assert e.value.status == status, e.value.data
    for word in words:
        assert word in e.value.data.get("msg", ""), e.value.data
    data: dict[str, Any] = e.value.data
    return data


@pytest.mark.parametrize("bad", ESCAPES)
def test_paths_that_leave_the_folder_are_refused_everywhere(
    api: Session, folder: Folder, tmp_path: Path, bad: str
) -> None:
    name = folder()
    vf = api.VFolder(name)
    (tmp_path / "ok.txt").write_text("ok")
    vf.upload(["ok.txt"], basedir=tmp_path)
    base = f"/folders/{name}"
    refused(400, lambda: vf.list_files(bad))
    refused(400, lambda: vf.mkdir(bad, parents=True))
    refused(400, lambda: vf.delete_files([bad], recursive=True))
    refused(400, lambda: vf.rename_file(bad, "y"))
    refused(400, lambda: vf.move_file(bad, "x"))
    refused(400, lambda: vf.move_file("ok.txt", bad))
    refused(400, lambda: call(api, "POST", base + "/request-upload", {"path": bad, "size": 1}))
    refused(400, lambda: call(api, "POST", base + "/request-download", {"path": bad}))
    for new_name in ("../y", "a/b", "..", "/etc/y"):
        refused(400, lambda n=new_name: vf.rename_file("ok.txt", n))
    assert [i["name"] for i in vf.list_files()["items"]] == ["ok.txt"]
    assert not Path("/x").exists()


def test_symbolic_links_out_of_the_folder_are_refused(
    api: Session, folder: Folder, new_session: Any, tmp_path: Path
) -> None:
    name = folder()
    compute = new_session(mounts=[name])
    root = f"/home/work/{name}"
    code = (
        f"import os\nos.symlink('/etc', '{root}/etc-link')\n"
        f"os.symlink('/etc/passwd', '{root}/pw')\nos.symlink('..', '{root}/up')\n"
        f"os.mkdir('{root}/inner')\nopen('{root}/inner/f', 'w').write('in')\n"
        f"os.symlink('inner', '{root}/inner-link')"
    )
    assert run(compute, code)[3] == 0
    vf = api.VFolder(name)
    kinds = {i["name"]: i["type"] for i in vf.list_files()["items"]}
    assert kinds == {
        "etc-link": "SYMLINK",
        "pw": "SYMLINK",
        "up": "SYMLINK",
        "inner": "DIRECTORY",
        "inner-link": "SYMLINK",
    }
    base = f"/folders/{name}"
    link = "symbolic link"
    refused(400, lambda: vf.list_files("etc-link"), link)
    refused(400, lambda: vf.list_files("up"), link)
    refused(400, lambda: call(api, "POST", base + "/request-download", {"path": "pw"}), link)
    refused(400, lambda: vf.download(["etc-link/passwd"], basedir=tmp_path), link)
    (tmp_path / "evil").write_text("evil")
    refused(400, lambda: vf.upload(["evil"], basedir=tmp_path, dst_dir="etc-link"), link)
    refused(400, lambda: vf.mkdir("etc-link/newdir"), link)
    refused(400, lambda: vf.delete_files(["etc-link/hostname"]), link)
    refused(400, lambda: vf.rename_file("etc-link/hostname", "x"), link)
    refused(400, lambda: vf.move_file("inner", "etc-link"), link)
    refused(400, lambda: vf.move_file("inner", "up/stolen"), link)
    refused(400, lambda: new_session(mounts=[f"{name}/etc-link"]), link)
    assert not Path("/etc/evil").exists()
    assert not Path("/etc/newdir").exists()
    # Links that stay inside the folder work, and deleting a link deletes only the link.
    assert [i["name"] for i in vf.list_files("inner-link")["items"]] == ["f"]
    vf.download(["inner-link/f"], basedir=tmp_path)
    assert (tmp_path / "inner-link/f").read_text() == "in"
    vf.delete_files(["pw", "etc-link", "up"])
    assert Path("/etc/passwd").is_file()
    assert Path("/etc/hostname").exists()


def test_another_users_folders_are_invisible(
    api: Session, user_api: Session, folder: Folder, new_session: Any, tmp_path: Path
) -> None:
    name = folder("secret")
    folder_id = api.VFolder(name).get_id()
    (tmp_path / "f").write_text("x")
    assert name not in [f["name"] for f in user_api.VFolder.list()]
    assert name not in [f["name"] for f in user_api.VFolder.list(list_all=True)]
    assert name not in [f["name"] for f in user_api.VFolder.paginated_list().items]
    for ref in (name, folder_id.hex, str(folder_id)):
        theirs = user_api.VFolder(ref)
        refused(404, theirs.info, ref)
        refused(404, theirs.list_files)
        refused(404, lambda v=theirs: v.upload(["f"], basedir=tmp_path))
        refused(404, lambda v=theirs: v.download(["f"], basedir=tmp_path / "dl"))
        refused(404, lambda v=theirs: v.mkdir("d"))
        refused(404, lambda v=theirs: v.rename("stolen"))
        refused(404, theirs.delete)
        refused(404, lambda r=ref: call(user_api, "GET", "/folders/_/id", {"name": r}))
    query = "query($id: String!) { vfolder(id: $id) { name } }"
    data = user_api.Admin.query(query, {"id": str(folder_id)})
    assert data["vfolder"] is None
    for ref in (name, folder_id.hex):
        refused(404, lambda r=ref: user_api.ComputeSession.get_or_create("python", mounts=[r]), ref)
    # The user's namespace is their own: the same name is free for them.
    mine = folder(name=name, owner=user_api)
    assert user_api.VFolder(mine).info()["is_owner"] is True
    assert api.VFolder(name).info()["id"] == folder_id.hex
    # An administrator reaches the user's folder only by naming its id.
    theirs_id = user_api.VFolder(mine).get_id()
    assert api.VFolder(theirs_id.hex).info()["user"] != api.VFolder(name).info()["user"]


def test_tus_and_ranged_downloads_follow_the_protocol(api: Session, folder: Folder) -> None:
    name = folder()
    base = f"/folders/{name}"
    up = call(api, "POST", base + "/request-upload", {"path": "t/data.bin", "size": 10})
    down_token: dict[str, Any] = {}

    async def scenario() -> None:
        tus = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
        url = up["url"]
        async with aiohttp.ClientSession() as http:
            async with http.options(url) as r:
                assert r.status == 204
                assert r.headers["Tus-Resumable"] == "1.0.0"
            params = {"token": up["token"]}
            async with http.head(url, params=params) as r:
                assert (r.headers["Upload-Offset"], r.headers["Upload-Length"]) == ("0", "10")
            patch = {**tus, "Upload-Offset": "0"}
            async with http.patch(url, params=params, data=b"0123", headers=patch) as r:
                assert r.status == 204
                assert r.headers["Upload-Offset"] == "4"
            async with http.patch(url, params=params, data=b"0123", headers=patch) as r:
                assert r.status == 409
            async with http.patch(url, params={"token": "nope"}, data=b"x", headers=patch) as r:
                assert r.status == 401
                assert r.content_type == "application/problem+json"
            patch["Upload-Offset"] = "4"
            async with http.patch(url, params=params, data=b"4567890", headers=patch) as r:
                assert r.status == 413
            async with http.patch(url, params=params, data=b"456789", headers=patch) as r:
                assert r.status == 204
                assert r.headers["Upload-Offset"] == "10"
            down = await asyncio.to_thread(
                call, api, "POST", base + "/request-download", {"path": "t/data.bin"}
            )
            down_token.update(down)
            dparams = {"token": down["token"]}
            async with http.get(down["url"], params=dparams) as r:
                assert r.status == 200
                assert await r.read() == b"0123456789"
                last_modified = r.headers["Last-Modified"]
            ranged = {"Range": "bytes=4-", "If-Range": last_modified}
            async with http.get(down["url"], params=dparams, headers=ranged) as r:
                assert r.status == 206
                assert r.headers["Content-Range"] == "bytes 4-9/10"
                assert await r.read() == b"456789"
            stale = {"Range": "bytes=4-", "If-Range": "Thu, 01 Jan 1970 00:00:00 GMT"}
            async with http.get(down["url"], params=dparams, headers=stale) as r:
                assert r.status == 200
                assert await r.read() == b"0123456789"
            async with http.get(down["url"], params=dparams, headers={"Range": "bytes=20-"}) as r:
                assert r.status == 416
            async with http.patch(url, params=dparams, data=b"x", headers=patch) as r:
                assert r.status == 401

    asyncio.run(scenario())
    assert uuid.UUID(api.VFolder(name).get_id().hex)
