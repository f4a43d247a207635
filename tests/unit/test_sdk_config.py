from __future__ import annotations

from pathlib import Path

import pytest
from yarl import URL

from ai.backend.client.config import APIConfig


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in ("ENDPOINT", "ACCESS_KEY", "SECRET_KEY", "ENDPOINT_TYPE", "DOMAIN", "GROUP"):
        monkeypatch.delenv(f"BACKEND_{key}", raising=False)
        monkeypatch.delenv(f"SORNA_{key}", raising=False)
    monkeypatch.chdir(tmp_path)


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKEND_ENDPOINT", "http://a:1,http://b:2")
    monkeypatch.setenv("BACKEND_ACCESS_KEY", "AK")
    monkeypatch.setenv("SORNA_SECRET_KEY", "SK")
    config = APIConfig()
    assert config.endpoints == [URL("http://a:1"), URL("http://b:2")]
    assert (config.access_key, config.secret_key) == ("AK", "SK")
    config.rotate_endpoints()
    assert config.endpoint == URL("http://b:2")


def test_dotenv_file_overrides_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BACKEND_ACCESS_KEY", "FROM_SHELL")
    (tmp_path / ".env").write_text("BACKEND_ACCESS_KEY=FROM_DOTENV\n")
    assert APIConfig().access_key == "FROM_DOTENV"


def test_explicit_arguments_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKEND_ENDPOINT", "http://env:1")
    config = APIConfig(endpoint="https://api.backend.ai.local", domain="d", group="g")
    assert config.endpoint == URL("https://api.backend.ai.local")
    assert (config.domain, config.group) == ("d", "g")


def test_relative_endpoint_is_refused() -> None:
    with pytest.raises(ValueError, match="absolute"):
        APIConfig(endpoint="api.example.com")
