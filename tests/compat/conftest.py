"""The official ``backend.ai-client`` packages, each in its own venv built by setup-compat.sh."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..harness import REPO, missing

SCRIPTS = Path(__file__).parent / "scripts"
CLIENTS = {"23.9.10": REPO / ".compat/v23/bin/python", "26.9.6": REPO / ".compat/v26/bin/python"}


@dataclass(frozen=True)
class OfficialClient:
    version: str
    python: Path

    def run(
        self, script: str, env: Mapping[str, str], *args: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
        full_env.update(env)
        return subprocess.run(
            [str(self.python), str(SCRIPTS / script), *args],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=SCRIPTS,
        )

    def run_json(self, script: str, env: Mapping[str, str], *args: str) -> Any:
        proc = self.run(script, env, *args)
        assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
        return json.loads(proc.stdout.strip().splitlines()[-1])

    @property
    def cli(self) -> Path:
        return self.python.parent / "backend.ai"


@pytest.fixture(params=sorted(CLIENTS), ids=lambda v: f"official-{v}")
def official(request: pytest.FixtureRequest) -> OfficialClient:
    version: str = request.param
    python = CLIENTS[version]
    if not python.exists():
        reason = f"the official client {version} is not installed: run scripts/setup-compat.sh"
        missing(reason)
    return OfficialClient(version, python)
