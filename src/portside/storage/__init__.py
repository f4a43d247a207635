"""Volume hosts that hold virtual folders' files.

Only the ``local`` host exists: a directory per folder under the data directory.  The server
process (often root) reads and writes inside those directories on behalf of users whose
sessions can also write there, so every path a request names is confined to its folder here,
in one place, rather than in each API handler.
"""

from __future__ import annotations

from .local import DirEntry, FileStat, LocalVolume, Usage, split_relpath

__all__ = ("DirEntry", "FileStat", "LocalVolume", "Usage", "split_relpath")
