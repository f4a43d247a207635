"""Where kernels' run directories go, and that a run root someone else made is refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from portside.agent.base import AgentError
from portside.agent.local.layout import prepare_run_root, run_root


def test_each_data_directory_has_its_own_run_root(tmp_path: Path) -> None:
    first = run_root(tmp_path / "a", str(tmp_path / "run"))
    second = run_root(tmp_path / "b", str(tmp_path / "run"))
    assert first.parent == second.parent == tmp_path / "run"
    assert first != second
    assert first.name.startswith(f"portside-{os.geteuid()}-")


def test_the_run_root_is_made_private(tmp_path: Path) -> None:
    root = run_root(tmp_path / "data", str(tmp_path / "shm"))
    prepare_run_root(root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o711
    # A second server on the same data directory finds it and accepts it.
    prepare_run_root(root)


def test_a_symlink_in_place_of_the_run_root_is_refused(tmp_path: Path) -> None:
    root = run_root(tmp_path / "data", str(tmp_path / "shm"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    root.parent.mkdir()
    root.symlink_to(elsewhere)
    with pytest.raises(AgentError, match="run_dir"):
        prepare_run_root(root)


def test_a_run_root_others_may_write_to_is_refused(tmp_path: Path) -> None:
    root = run_root(tmp_path / "data", str(tmp_path / "shm"))
    root.mkdir(parents=True)
    root.chmod(0o777)
    with pytest.raises(AgentError, match="only it may write"):
        prepare_run_root(root)
