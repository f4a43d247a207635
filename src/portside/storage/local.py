"""The ``local`` volume host: one directory per folder under ``<data_dir>/vfolders``.

Confinement.  A request names a path relative to its folder.  ``..`` components and absolute
paths are refused outright.  The rest is resolved with ``realpath`` and must stay inside the
folder, so a symbolic link a session made (``data -> /etc``) cannot lead the server out; symbolic
links that stay inside the folder keep working.  The resolved path is then opened one
component at a time with ``O_NOFOLLOW`` relative to its parent's descriptor, so a session that
swaps a directory for a link between the check and the use gets an error, not the link's target.
Operations on an entry itself (delete, rename, move, replace by upload) resolve only its parent
and act on the final name without following it: deleting a link deletes the link.

Sharing between sessions.  Each session runs as its own unprivileged uid, and every session of a
folder's owner must be able to read and change what another wrote there.  A folder's root is
mode 0777 and carries a default POSIX ACL granting everyone rwx, which new files and
directories inherit instead of the writer's umask; where the file system has no ACLs, files
stay readable by other sessions but only their writer may change them.  Nobody else reaches a
folder: ``<data_dir>/vfolders`` is mode 0700 and sandboxes see only the folders bound into them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import struct
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from portside.errors import Conflict, InvalidAPIParameters, ObjectNotFound

ROOT_MODE = 0o700
FOLDER_MODE = 0o777
FILE_MODE = 0o666
UPLOADS_DIR = ".uploads"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a session may leave a FIFO where a file is expected; opening it must not hang.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# ``system.posix_acl_default``: version 2, then (tag, perm, id) for USER_OBJ, GROUP_OBJ, OTHER.
_SHARED_DEFAULT_ACL = struct.pack("<I", 2) + b"".join(
    struct.pack("<HHI", tag, 0o7, 0xFFFFFFFF) for tag in (0x01, 0x04, 0x20)
)


@dataclass(frozen=True, slots=True)
class Usage:
    used_bytes: int
    file_count: int


@dataclass(frozen=True, slots=True)
class DirEntry:
    name: str
    #: "FILE", "DIRECTORY", "SYMLINK" or "OTHER".
    type: str
    size: int
    mode: int
    created: float
    modified: float
    accessed: float


@dataclass(frozen=True, slots=True)
class FileStat:
    size: int
    modified: float


def split_relpath(relpath: str) -> list[str]:
    """The components of a folder-relative path; ``..``, absolute paths and NULs are refused."""
    if "\x00" in relpath:
        raise InvalidAPIParameters(f"the path {relpath!r} contains a NUL character")
    if relpath.startswith("/"):
        raise InvalidAPIParameters(
            f"the path {relpath!r} is absolute; give a path relative to the folder's root"
        )
    parts = [p for p in relpath.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidAPIParameters(
            f"the path {relpath!r} leaves the folder ('..' is not allowed); "
            "give a path inside the folder"
        )
    return parts


def check_name(name: str) -> None:
    """A single file name, as ``rename-file`` takes it."""
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise InvalidAPIParameters(
            f"{name!r} is not a file name; give a name without '/' (it is not a path)"
        )


@contextlib.contextmanager
def fs_errors(relpath: str) -> Iterator[None]:
    """Turns what the file system says into errors that name the path and what to do."""
    try:
        yield
    except FileNotFoundError:
        raise ObjectNotFound(
            f"{relpath!r} does not exist in the folder", object_name="file"
        ) from None
    except FileExistsError:
        raise Conflict(f"{relpath!r} already exists in the folder") from None
    except NotADirectoryError:
        raise InvalidAPIParameters(f"{relpath!r}: a part of this path is not a directory") from None
    except IsADirectoryError:
        raise InvalidAPIParameters(f"{relpath!r} is a directory") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InvalidAPIParameters(
                f"{relpath!r} goes through a symbolic link that changed while it was used"
            ) from None
        if e.errno == errno.ENOTEMPTY:
            raise InvalidAPIParameters(
                f"the directory {relpath!r} is not empty; delete it recursively"
            ) from None
        if e.errno in (errno.ENAMETOOLONG, errno.EINVAL):
            raise InvalidAPIParameters(f"{relpath!r}: {e.strerror}") from None
        raise


def _share_with_sessions(path: str) -> None:
    os.chmod(path, FOLDER_MODE)
    # No ACLs on this file system: files stay readable by other sessions (see the module doc).
    with contextlib.suppress(OSError):
        os.setxattr(path, "system.posix_acl_default", _SHARED_DEFAULT_ACL)


class LocalVolume:
    """Folder directories and upload areas under ``root``; every method blocks (use a thread)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, ROOT_MODE)
        (self.root / UPLOADS_DIR).mkdir(mode=ROOT_MODE, exist_ok=True)

    def _real_root(self) -> str:
        return os.path.realpath(self.root)

    def folder_path(self, folder_id: uuid.UUID) -> Path:
        return Path(self._real_root()) / folder_id.hex

    # -- folders ---------------------------------------------------------------------------

    def create_folder(self, folder_id: uuid.UUID) -> None:
        self.prepare()
        path = str(self.folder_path(folder_id))
        os.mkdir(path, FOLDER_MODE)
        _share_with_sessions(path)

    def delete_folder(self, folder_id: uuid.UUID) -> None:
        path = self.folder_path(folder_id)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)

    def usage(self, folder_id: uuid.UUID) -> Usage:
        used = files = 0
        top = str(self.folder_path(folder_id))
        if not os.path.isdir(top):
            return Usage(0, 0)
        for _, _, filenames, dir_fd in os.fwalk(top, follow_symlinks=False):
            for name in filenames:
                with contextlib.suppress(OSError):
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        used += st.st_size
                        files += 1
        return Usage(used, files)

    # -- resolving ---------------------------------------------------------------------------

    def _confine(self, folder_id: uuid.UUID, parts: list[str], relpath: str) -> list[str]:
        """The components of where ``parts`` really lead, checked to be inside the folder."""
        top = str(self.folder_path(folder_id))
        real = os.path.realpath(os.path.join(top, *parts))
        if real == top:
            return []
        if not real.startswith(top + os.sep):
            raise InvalidAPIParameters(
                f"the path {relpath!r} leads outside the folder through a symbolic link"
            )
        return real[len(top) + 1 :].split(os.sep)

    @contextlib.contextmanager
    def _dir(
        self, folder_id: uuid.UUID, parts: list[str], *, create: bool = False
    ) -> Iterator[int]:
        """A descriptor of the directory ``parts`` (already confined), opened link by link."""
        fd = os.open(str(self.folder_path(folder_id)), _DIR_FLAGS)
        try:
            for name in parts:
                try:
                    next_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(name, FOLDER_MODE, dir_fd=fd)
                    next_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                    os.fchmod(next_fd, FOLDER_MODE)
                except NotADirectoryError:
                    # O_NOFOLLOW | O_DIRECTORY on a link says ENOTDIR; say what it was.
                    if stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                        raise OSError(errno.ELOOP, "symbolic link", name) from None
                    raise
                os.close(fd)
                fd = next_fd
            yield fd
        finally:
            os.close(fd)

    def _entry(self, folder_id: uuid.UUID, relpath: str) -> tuple[list[str], str]:
        """The confined parent of an entry and the entry's own (unfollowed) name."""
        parts = split_relpath(relpath)
        if not parts:
            raise InvalidAPIParameters(
                f"{relpath!r} is the folder's root; give a path inside the folder"
            )
        return self._confine(folder_id, parts[:-1], relpath), parts[-1]

    def check_target(self, folder_id: uuid.UUID, relpath: str) -> None:
        """Refuses, before any byte moves, an upload target whose parent leads outside."""
        self._entry(folder_id, relpath)

    def resolve_dir(self, folder_id: uuid.UUID, relpath: str) -> Path:
        """The host path of a directory inside the folder (for a sub-path mount)."""
        parts = self._confine(folder_id, split_relpath(relpath), relpath)
        with fs_errors(relpath), self._dir(folder_id, parts):
            pass
        return self.folder_path(folder_id).joinpath(*parts)

    # -- files -------------------------------------------------------------------------------

    def list_dir(self, folder_id: uuid.UUID, relpath: str) -> list[DirEntry]:
        parts = self._confine(folder_id, split_relpath(relpath), relpath)
        entries = []
        with fs_errors(relpath), self._dir(folder_id, parts) as fd, os.scandir(fd) as it:
            for item in it:
                try:
                    st = item.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                kind = (
                    "DIRECTORY"
                    if stat.S_ISDIR(st.st_mode)
                    else "SYMLINK"
                    if stat.S_ISLNK(st.st_mode)
                    else "FILE"
                    if stat.S_ISREG(st.st_mode)
                    else "OTHER"
                )
                entries.append(
                    DirEntry(
                        item.name,
                        kind,
                        st.st_size,
                        st.st_mode,
                        st.st_ctime,
                        st.st_mtime,
                        st.st_atime,
                    )
                )
        return sorted(entries, key=lambda e: e.name)

    def mkdir(self, folder_id: uuid.UUID, relpath: str, *, parents: bool, exist_ok: bool) -> None:
        parent, name = self._entry(folder_id, relpath)
        with fs_errors(relpath), self._dir(folder_id, parent, create=parents) as fd:
            try:
                os.mkdir(name, FOLDER_MODE, dir_fd=fd)
            except FileExistsError:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if exist_ok and stat.S_ISDIR(st.st_mode):
                    return
                raise
            new_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            try:
                os.fchmod(new_fd, FOLDER_MODE)
            finally:
                os.close(new_fd)

    def delete(self, folder_id: uuid.UUID, relpath: str, *, recursive: bool) -> None:
        parent, name = self._entry(folder_id, relpath)
        with fs_errors(relpath), self._dir(folder_id, parent) as fd:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=fd)
            elif recursive:
                shutil.rmtree(name, dir_fd=fd)
            else:
                os.rmdir(name, dir_fd=fd)

    def rename(self, folder_id: uuid.UUID, relpath: str, new_name: str) -> None:
        check_name(new_name)
        parent, name = self._entry(folder_id, relpath)
        with fs_errors(relpath), self._dir(folder_id, parent) as fd:
            os.stat(name, dir_fd=fd, follow_symlinks=False)
            with contextlib.suppress(FileNotFoundError):
                os.stat(new_name, dir_fd=fd, follow_symlinks=False)
                raise Conflict(f"{new_name!r} already exists beside {relpath!r}")
            os.rename(name, new_name, src_dir_fd=fd, dst_dir_fd=fd)

    def move(self, folder_id: uuid.UUID, src: str, dst: str) -> None:
        """Moves ``src`` to ``dst``, or into ``dst`` when that is an existing directory."""
        src_parent, src_name = self._entry(folder_id, src)
        dst_parts = self._confine(folder_id, split_relpath(dst), dst)
        with (
            contextlib.suppress(FileNotFoundError, NotADirectoryError),
            self._dir(folder_id, dst_parts),
        ):
            dst_parts = [*dst_parts, src_name]
        if not dst_parts:
            raise InvalidAPIParameters(f"cannot move {src!r} onto the folder's root")
        with (
            fs_errors(src),
            self._dir(folder_id, src_parent) as src_fd,
            self._dir(folder_id, dst_parts[:-1]) as dst_fd,
        ):
            os.stat(src_name, dir_fd=src_fd, follow_symlinks=False)
            os.rename(src_name, dst_parts[-1], src_dir_fd=src_fd, dst_dir_fd=dst_fd)

    def existing_size(self, folder_id: uuid.UUID, relpath: str) -> int:
        """The size of the regular file at ``relpath`` (0 if none): what an upload replaces."""
        try:
            parent, name = self._entry(folder_id, relpath)
            with self._dir(folder_id, parent) as fd:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except (OSError, InvalidAPIParameters):
            return 0
        return st.st_size if stat.S_ISREG(st.st_mode) else 0

    def open_file(self, folder_id: uuid.UUID, relpath: str) -> tuple[int, FileStat]:
        """A read-only descriptor of a regular file (the caller closes it) and its stat."""
        parts = self._confine(folder_id, split_relpath(relpath), relpath)
        if not parts:
            raise InvalidAPIParameters(f"{relpath!r} is the folder itself; name a file in it")
        with fs_errors(relpath), self._dir(folder_id, parts[:-1]) as parent:
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=parent)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise InvalidAPIParameters(f"{relpath!r} is {what}; only files can be downloaded")
        return fd, FileStat(st.st_size, st.st_mtime)

    # -- resumable uploads -------------------------------------------------------------------

    def _partial(self, upload_id: str) -> str:
        if not upload_id.isalnum():
            raise InvalidAPIParameters("malformed upload id")
        return os.path.join(self._real_root(), UPLOADS_DIR, upload_id)

    def partial_offset(self, upload_id: str) -> int:
        """How many bytes of an upload have arrived: the partial file's size."""
        try:
            return os.stat(self._partial(upload_id), follow_symlinks=False).st_size
        except FileNotFoundError:
            return 0

    def open_partial(self, upload_id: str, offset: int) -> int:
        """A descriptor to append to, checked to be at ``offset`` (TUS answers 409 otherwise)."""
        self.prepare()
        fd = os.open(
            self._partial(upload_id),
            os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
            FILE_MODE,
        )
        size = os.fstat(fd).st_size
        if size != offset:
            os.close(fd)
            raise Conflict(
                f"the upload is at offset {size}, not {offset}; resume from Upload-Offset {size}"
            )
        os.fchmod(fd, FILE_MODE)
        os.lseek(fd, 0, os.SEEK_END)
        return fd

    def commit_upload(self, upload_id: str, folder_id: uuid.UUID, relpath: str) -> None:
        """Moves a complete upload to ``relpath``, creating missing parent directories."""
        parent, name = self._entry(folder_id, relpath)
        with fs_errors(relpath), self._dir(folder_id, parent, create=True) as fd:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise InvalidAPIParameters(
                        f"{relpath!r} is a directory; upload to a file path instead"
                    )
            os.replace(self._partial(upload_id), name, dst_dir_fd=fd)

    def clear_uploads(self, older_than: float) -> None:
        """Removes partial uploads untouched for ``older_than`` seconds: no token still
        names them."""
        area = os.path.join(self._real_root(), UPLOADS_DIR)
        cutoff = time.time() - older_than
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(area):
                path = os.path.join(area, name)
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(path).st_mtime < cutoff:
                        os.unlink(path)

    def discard_upload(self, upload_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._partial(upload_id))
