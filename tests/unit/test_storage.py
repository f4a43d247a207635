"""The local volume on its own: path confinement, symlink escapes, quotas, TUS offsets, mounts."""

from __future__ import annotations

import asyncio
import os
import stat
import uuid
from pathlib import Path

import pytest

from portside.api.vfolder_transfer import _byte_range
from portside.db.models import VFolderRow
from portside.errors import (
    AuthFailed,
    Conflict,
    InvalidAPIParameters,
    ObjectNotFound,
    QuotaExceeded,
)
from portside.services import mounts
from portside.services.vfolder_transfers import human_size
from portside.services.vfolders import VFolderService
from portside.storage import LocalVolume, split_relpath
from portside.storage.local import fs_errors
from portside.storage.transfers import Transfer, TransferTokens


@pytest.fixture
def volume(tmp_path: Path) -> LocalVolume:
    return LocalVolume(tmp_path / "vfolders")


@pytest.fixture
def folder_id(volume: LocalVolume) -> uuid.UUID:
    folder_id = uuid.uuid4()
    volume.create_folder(folder_id)
    return folder_id


@pytest.mark.parametrize(
    ("relpath", "parts"),
    [(".", []), ("", []), ("a/b", ["a", "b"]), ("./a//b/", ["a", "b"]), ("a/./b", ["a", "b"])],
)
def test_relative_paths_split_into_components(relpath: str, parts: list[str]) -> None:
    assert split_relpath(relpath) == parts


@pytest.mark.parametrize(
    ("relpath", "words"),
    [
        ("../x", "'..'"),
        ("a/../../b", "'..'"),
        ("a/..", "'..'"),
        ("/etc", "absolute"),
        ("a\x00b", "NUL"),
    ],
)
def test_paths_that_leave_or_cheat_are_refused(relpath: str, words: str) -> None:
    with pytest.raises(InvalidAPIParameters, match=words):
        split_relpath(relpath)


def test_folders_are_shared_with_every_session_of_the_owner(
    volume: LocalVolume, folder_id: uuid.UUID
) -> None:
    root = volume.folder_path(folder_id)
    assert stat.S_IMODE(root.stat().st_mode) == 0o777
    assert stat.S_IMODE(volume.root.stat().st_mode) == 0o700
    old = os.umask(0o077)
    try:
        (root / "made-by-a-session").write_text("x")
        (root / "dir-by-a-session").mkdir()
    finally:
        os.umask(old)
    if "system.posix_acl_default" in os.listxattr(root):
        # The default ACL overrides the writer's umask: other session uids may change these.
        assert stat.S_IMODE((root / "made-by-a-session").stat().st_mode) == 0o666
        assert stat.S_IMODE((root / "dir-by-a-session").stat().st_mode) == 0o777


def test_files_directories_and_usage(volume: LocalVolume, folder_id: uuid.UUID) -> None:
    volume.mkdir(folder_id, "a/b", parents=True, exist_ok=False)
    with pytest.raises(Conflict):
        volume.mkdir(folder_id, "a/b", parents=False, exist_ok=False)
    volume.mkdir(folder_id, "a/b", parents=False, exist_ok=True)
    with pytest.raises(ObjectNotFound):
        volume.mkdir(folder_id, "x/y", parents=False, exist_ok=False)
    root = volume.folder_path(folder_id)
    (root / "a/b/f.txt").write_bytes(b"12345")
    (root / "g.txt").write_bytes(b"123")
    os.symlink("/etc/passwd", root / "pw")
    assert volume.usage(folder_id).used_bytes == 8
    assert volume.usage(folder_id).file_count == 2
    entries = {e.name: e.type for e in volume.list_dir(folder_id, ".")}
    assert entries == {"a": "DIRECTORY", "g.txt": "FILE", "pw": "SYMLINK"}
    volume.rename(folder_id, "g.txt", "h.txt")
    with pytest.raises(Conflict):
        volume.rename(folder_id, "h.txt", "a")
    with pytest.raises(InvalidAPIParameters):
        volume.rename(folder_id, "h.txt", "../h.txt")
    volume.move(folder_id, "h.txt", "a")
    assert (root / "a/h.txt").is_file()
    volume.move(folder_id, "a/h.txt", "a/b/i.txt")
    assert (root / "a/b/i.txt").is_file()
    with pytest.raises(InvalidAPIParameters, match="not empty"):
        volume.delete(folder_id, "a", recursive=False)
    volume.delete(folder_id, "a", recursive=True)
    with pytest.raises(InvalidAPIParameters, match="root"):
        volume.delete(folder_id, ".", recursive=True)
    assert [e.name for e in volume.list_dir(folder_id, ".")] == ["pw"]


def test_symbolic_links_may_not_lead_out(
    volume: LocalVolume, folder_id: uuid.UUID, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    root = volume.folder_path(folder_id)
    os.symlink(outside, root / "out")
    os.symlink(outside / "secret", root / "secret-link")
    os.symlink("..", root / "up")
    (root / "inside").mkdir()
    (root / "inside/f").write_text("fine")
    os.symlink("inside", root / "in")
    escape = "outside the folder through a symbolic link"
    for action in (
        lambda: volume.list_dir(folder_id, "out"),
        lambda: volume.list_dir(folder_id, "up"),
        lambda: volume.open_file(folder_id, "secret-link"),
        lambda: volume.open_file(folder_id, "out/secret"),
        lambda: volume.mkdir(folder_id, "out/new", parents=True, exist_ok=True),
        lambda: volume.delete(folder_id, "out/secret", recursive=False),
        lambda: volume.rename(folder_id, "out/secret", "x"),
        lambda: volume.move(folder_id, "inside", "out"),
        lambda: volume.move(folder_id, "inside", "up/stolen"),
        lambda: volume.check_target(folder_id, "out/new-file"),
        lambda: volume.resolve_dir(folder_id, "out"),
    ):
        with pytest.raises(InvalidAPIParameters, match=escape):
            action()
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    # Inside links work; deleting a link removes the link, not its target.
    fd, st = volume.open_file(folder_id, "in/f")
    os.close(fd)
    assert st.size == 4
    volume.delete(folder_id, "secret-link", recursive=False)
    volume.delete(folder_id, "out", recursive=True)
    assert (outside / "secret").read_text() == "secret"


def test_a_link_swapped_in_after_the_check_is_not_followed(
    volume: LocalVolume, folder_id: uuid.UUID, tmp_path: Path
) -> None:
    os.symlink(tmp_path, volume.folder_path(folder_id) / "swapped")
    with (
        pytest.raises(InvalidAPIParameters, match="symbolic link"),
        fs_errors("swapped"),
        volume._dir(folder_id, ["swapped"]),
    ):
        pass


def test_only_regular_files_are_opened(volume: LocalVolume, folder_id: uuid.UUID) -> None:
    root = volume.folder_path(folder_id)
    os.mkfifo(root / "fifo")
    (root / "dir").mkdir()
    with pytest.raises(InvalidAPIParameters, match="not a regular file"):
        volume.open_file(folder_id, "fifo")
    with pytest.raises(InvalidAPIParameters, match="directory"):
        volume.open_file(folder_id, "dir")
    with pytest.raises(ObjectNotFound):
        volume.open_file(folder_id, "missing")


def test_tus_offsets_live_in_the_partial_file(volume: LocalVolume, folder_id: uuid.UUID) -> None:
    assert volume.partial_offset("abc123") == 0
    fd = volume.open_partial("abc123", 0)
    os.write(fd, b"hel")
    os.close(fd)
    assert volume.partial_offset("abc123") == 3
    with pytest.raises(Conflict, match="offset 3"):
        volume.open_partial("abc123", 0)
    fd = volume.open_partial("abc123", 3)
    os.write(fd, b"lo")
    os.close(fd)
    volume.commit_upload("abc123", folder_id, "new/dir/hello.txt")
    assert (volume.folder_path(folder_id) / "new/dir/hello.txt").read_text() == "hello"
    assert volume.partial_offset("abc123") == 0
    with pytest.raises(InvalidAPIParameters):
        volume.open_partial("../escape", 0)


SECRET = "a test secret, long enough for HS256 keys"


def test_transfer_tokens_expire_keep_to_their_kind_and_travel_between_servers() -> None:
    now = [1000.0]
    tokens = TransferTokens(lambda: SECRET, ttl=10, clock=lambda: now[0])
    transfer = Transfer("upload", uuid.uuid4(), "f", "a.txt", uuid.uuid4(), size=3)
    token = tokens.issue(transfer)
    assert tokens.get(token, "upload") is transfer
    with pytest.raises(AuthFailed):
        tokens.get(token, "download")
    # Another server with the same secret reads the same transfer from the token alone.
    other = TransferTokens(lambda: SECRET, ttl=10, clock=lambda: now[0])
    copy = other.get(token, "upload")
    assert (copy.folder_id, copy.path, copy.size, copy.upload_id) == (
        transfer.folder_id,
        transfer.path,
        transfer.size,
        transfer.upload_id,
    )
    with pytest.raises(AuthFailed, match="not valid"):
        TransferTokens(lambda: "a different secret of at least 32 bytes").get(token, "upload")
    now[0] = 1011
    with pytest.raises(AuthFailed, match="expired"):
        tokens.get(token, "upload")


def test_quota_counts_what_an_upload_replaces(volume: LocalVolume, folder_id: uuid.UUID) -> None:
    service = VFolderService(volume, db=None)  # type: ignore[arg-type]
    (volume.folder_path(folder_id) / "old.bin").write_bytes(b"x" * 600)
    row = VFolderRow(id=folder_id, name="data", quota=1024)
    asyncio.run(service.transfer._check_quota(row, "old.bin", 1024))
    asyncio.run(service.transfer._check_quota(row, "new.bin", 424))
    with pytest.raises(QuotaExceeded) as e:
        asyncio.run(service.transfer._check_quota(row, "new.bin", 425))
    assert "'data'" in str(e.value)
    assert "1.0 KiB" in str(e.value)
    assert "'new.bin' (425 bytes)" in str(e.value)
    unlimited = VFolderRow(id=folder_id, name="data", quota=0)
    asyncio.run(service.transfer._check_quota(unlimited, "huge", 10**15))
    assert human_size(3 * 1024**3) == "3.0 GiB"


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=4-", 10, (4, 10)),
        ("bytes=2-5", 10, (2, 6)),
        ("bytes=-3", 10, (7, 10)),
        ("bytes=8-100", 10, (8, 10)),
        ("bytes=20-", 10, (20, 10)),
        ("bytes=5-2", 10, None),
        ("bytes=0-1,4-5", 10, None),
        ("items=0-1", 10, None),
        (None, 10, None),
    ],
)
def test_byte_ranges(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert _byte_range(header, size) == expected


def test_mount_paths_follow_the_alias_rules() -> None:
    none: frozenset[str] = frozenset()
    assert mounts.kernel_path(None, "data", "data", none) == "/home/work/data"
    assert mounts.kernel_path(None, ".linuxbrew", "k", none) == "/home/linuxbrew/.linuxbrew"
    assert mounts.kernel_path("alias", "data", "data", none) == "/home/work/alias"
    assert mounts.kernel_path("/home/work/x/y", "data", "data", none) == "/home/work/x/y"
    assert mounts.kernel_path("/srv2/data", "data", "data", none) == "/srv2/data"
    for alias in ("/etc", "/usr/lib/x", "/home/work", "/home", ".bashrc", ".ssh", ".zsh_profile"):
        with pytest.raises(InvalidAPIParameters, match="reserved"):
            mounts.kernel_path(alias, "data", "data", none)
    with pytest.raises(InvalidAPIParameters, match="another folder"):
        mounts.kernel_path("other", "data", "data", frozenset({"other"}))
    with pytest.raises(InvalidAPIParameters, match=r"'\.\.'"):
        mounts.kernel_path("/home/work/../etc", "data", "data", none)
    with pytest.raises(InvalidAPIParameters, match="empty"):
        mounts.kernel_path(" ", "data", "data", none)


def test_mount_requests_permissions_and_overlaps() -> None:
    parsed = mounts.parse_requests(
        ["a/sub", "b"], {"b": "bee"}, {"b": {"perm": "ro", "type": "bind"}, "a/sub": {}}
    )
    assert [(r.folder, r.subpath, r.alias, r.permission) for r in parsed] == [
        ("a", "sub", None, None),
        ("b", "", "bee", "ro"),
    ]
    with pytest.raises(InvalidAPIParameters, match="not mounted"):
        mounts.parse_requests(["a"], {}, {"z": {}})
    with pytest.raises(InvalidAPIParameters, match="ro, rw, wd"):
        mounts.parse_requests(["a"], {}, {"a": {"permission": "all"}})
    assert mounts.read_only("ro", "rw", "a") is True
    assert mounts.read_only(None, "ro", "a") is True
    assert mounts.read_only(None, "rw", "a") is False
    with pytest.raises(Exception, match="read-only"):
        mounts.read_only("rw", "ro", "a")
    mounts.check_overlaps([("a", "/home/work/a"), ("b", "/home/work/a-b")])
    with pytest.raises(InvalidAPIParameters, match="overlap"):
        mounts.check_overlaps(
            [("a", "/home/work/a"), ("c", "/home/work/a-b"), ("b", "/home/work/a/b")]
        )
