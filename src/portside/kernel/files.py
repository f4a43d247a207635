"""File operations inside a session, confined to its working directory.

These run in the kernel process, inside the sandbox and as the session's unprivileged uid, so
the operating system already limits what they can touch.  On top of that every path a user
gives is resolved (symlinks included) and refused unless it stays under the working directory:
``../``, absolute paths and links that point out of ``/home/work`` all fail the same way.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from typing import Any


class PathError(Exception):
    """A path a user gave leaves the session's working directory or does not exist."""


class TooLarge(PathError):
    """A file is larger than the server accepts."""


def confine(root: str, path: str, *, must_exist: bool = False) -> str:
    """The real absolute path of ``path`` (relative to ``root``); raises unless it is inside."""
    real_root = os.path.realpath(root)
    if os.path.isabs(path):
        raise PathError(f"{path!r}: give a path relative to the working directory")
    candidate = os.path.realpath(os.path.join(real_root, path))
    if candidate != real_root and not candidate.startswith(real_root + os.sep):
        raise PathError(f"{path!r} leaves the working directory")
    if must_exist and not os.path.lexists(candidate):
        raise PathError(f"{path!r} does not exist")
    return candidate


def list_dir(root: str, path: str) -> dict[str, Any]:
    target = confine(root, path or ".", must_exist=True)
    if not os.path.isdir(target):
        raise PathError(f"{path!r} is not a directory")
    entries = []
    for name in sorted(os.listdir(target)):
        st = os.lstat(os.path.join(target, name))
        entries.append(
            {
                "mode": stat.filemode(st.st_mode),
                "size": st.st_size,
                "ctime": st.st_ctime,
                "mtime": st.st_mtime,
                "atime": st.st_atime,
                "filename": name,
            }
        )
    real_root = os.path.realpath(root)
    shown = "/home/work" + target[len(real_root) :]
    return {"files": entries, "abspath": shown}


def write_file(root: str, path: str, data: bytes, max_size: int) -> int:
    if len(data) > max_size:
        raise TooLarge(f"{path!r} is larger than the {max_size}-byte limit")
    if not path or path.endswith("/"):
        raise PathError(f"{path!r} is not a file name")
    parent = confine(root, os.path.dirname(path) or ".")
    os.makedirs(parent, exist_ok=True)
    # The parent may have been created through a link planted since the check: check again.
    parent = confine(root, os.path.relpath(parent, os.path.realpath(root)))
    target = os.path.join(parent, os.path.basename(path))
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return len(data)


def make_tar(root: str, path: str, max_size: int) -> bytes:
    """A tar archive of one file or directory; links inside are stored as links, not followed."""
    target = confine(root, path, must_exist=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(target, arcname=os.path.basename(target.rstrip("/")) or "work")
    data = buffer.getvalue()
    if len(data) > max_size:
        raise TooLarge(f"{path!r} is larger than the {max_size}-byte download limit")
    return data
