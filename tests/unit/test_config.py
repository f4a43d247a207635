from __future__ import annotations

from pathlib import Path

import pytest

from portside.config import ConfigError, load_config


def test_defaults_are_single_node(tmp_path: Path) -> None:
    config = load_config(environ={}, data_dir=tmp_path)
    assert (config.api.host, config.api.port) == ("127.0.0.1", 8090)
    assert (config.appproxy.host, config.appproxy.port) == ("127.0.0.1", 8091)
    assert config.effective_database_url == f"sqlite+aiosqlite:///{tmp_path}/portside.db"
    assert config.dev is False


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "portside.toml"
    path.write_text('dev = true\n[api]\nport = 9000\nhost = "0.0.0.0"\n')
    config = load_config(
        path,
        environ={"PORTSIDE_API_PORT": "9100", "PORTSIDE_DATABASE_URL": "postgresql+asyncpg://x/y"},
    )
    assert config.dev is True
    assert config.api.host == "0.0.0.0"
    assert config.api.port == 9100
    assert config.effective_database_url == "postgresql+asyncpg://x/y"
    assert load_config(path, environ={"PORTSIDE_API_PORT": "9100"}, dev=False).dev is False


def test_bad_values_say_which_field(tmp_path: Path) -> None:
    path = tmp_path / "portside.toml"
    path.write_text("[api]\nport = 99999\n")
    with pytest.raises(ConfigError, match=r"api\.port"):
        load_config(path, environ={})
    path.write_text("[api\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match="log_level"):
        load_config(environ={"PORTSIDE_LOG_LEVEL": "loud"})
