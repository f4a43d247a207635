"""Client configuration: constructor arguments, else ``BACKEND_*`` variables (wire-protocol.md s.1).

Like the official client, every environment lookup first loads the nearest ``.env`` file (from
the current directory upwards) with ``override=True``, so a project's ``.env`` wins over the
shell's environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dotenv import find_dotenv, load_dotenv
from yarl import URL

__all__ = (
    "API_VERSION",
    "DEFAULT_CHUNK_SIZE",
    "MIN_API_VERSION",
    "APIConfig",
    "get_config",
    "get_env",
    "parse_api_version",
    "set_config",
)

API_VERSION = (9, "20250722")
MIN_API_VERSION = (7, "20230615")
DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024
_VERSION_RE = re.compile(r"^v(\d+)\.(\d{8})$")


def parse_api_version(value: str) -> tuple[int, str]:
    match = _VERSION_RE.match(value)
    if match is None:
        raise ValueError(f"invalid API version string: {value!r}")
    return int(match.group(1)), match.group(2)


def format_api_version(version: tuple[int, str]) -> str:
    return f"v{version[0]}.{version[1]}"


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("y", "yes", "t", "true", "1", "on"):
        return True
    if lowered in ("n", "no", "f", "false", "0", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _endpoints(value: str | URL | Iterable[str | URL]) -> list[URL]:
    items: Iterable[str | URL]
    if isinstance(value, URL):
        items = [value]
    elif isinstance(value, str):
        items = [v for v in value.split(",") if v.strip()]
    else:
        items = value
    urls = [URL(str(v).strip()) for v in items]
    for url in urls:
        if not url.is_absolute():
            raise ValueError(f"the API endpoint must be an absolute URL: {url}")
    if not urls:
        raise ValueError("no API endpoint is configured")
    return urls


def _vfolder_mounts(value: str | Iterable[str]) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def _address_map(value: str | Mapping[str, str]) -> dict[str, str]:
    if isinstance(value, Mapping):
        return dict(value)
    pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
    return {k.strip(): v.strip() for k, v in pairs}


def get_env(
    key: str,
    default: Any = None,
    *,
    clean: Callable[[str], Any] = str,
) -> Any:
    """``BACKEND_<KEY>`` (or legacy ``SORNA_<KEY>``), cleaned; ``default`` when neither is set."""
    load_dotenv(find_dotenv(usecwd=True), override=True)
    key = key.upper()
    raw = os.environ.get(f"BACKEND_{key}")
    if raw is None:
        raw = os.environ.get(f"SORNA_{key}")
    if raw is None:
        if default is None:
            raise KeyError(f"BACKEND_{key} is not set")
        raw = default
    return clean(raw) if isinstance(raw, str) else raw


class APIConfig:
    """Where the API is and how to sign requests to it.

    Arguments left as ``None`` are read from the environment.
    """

    DEFAULTS: Mapping[str, Any] = {
        "endpoint": "https://api.cloud.backend.ai",
        "endpoint_type": "api",
        "version": format_api_version(API_VERSION),
        "hash_type": "sha256",
        "domain": "default",
        "group": "default",
        "storage_proxy_address_map": "",
        "connection_timeout": "10.0",
        "read_timeout": "0",
    }

    def __init__(
        self,
        *,
        endpoint: URL | str | None = None,
        endpoint_type: str | None = None,
        domain: str | None = None,
        group: str | None = None,
        storage_proxy_address_map: Mapping[str, str] | None = None,
        version: str | None = None,
        user_agent: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        hash_type: str | None = None,
        vfolder_mounts: Iterable[str] | None = None,
        skip_sslcert_validation: bool | None = None,
        connection_timeout: float | None = None,
        read_timeout: float | None = None,
        announcement_handler: Callable[[str], None] | None = None,
    ) -> None:
        from . import __version__

        d = self.DEFAULTS
        self._endpoints = (
            _endpoints(endpoint)
            if endpoint is not None
            else get_env("ENDPOINT", d["endpoint"], clean=_endpoints)
        )
        self._endpoint_type = endpoint_type or get_env("ENDPOINT_TYPE", d["endpoint_type"])
        self._domain = domain or get_env("DOMAIN", d["domain"])
        self._group = group or get_env("GROUP", d["group"])
        self._storage_proxy_address_map = (
            dict(storage_proxy_address_map)
            if storage_proxy_address_map is not None
            else get_env(
                "OVERRIDE_STORAGE_PROXY", d["storage_proxy_address_map"], clean=_address_map
            )
        )
        self._version = version or d["version"]
        self._user_agent = user_agent or f"Backend.AI Client for Python {__version__} (Portside)"
        if self._endpoint_type == "api":
            self._access_key = access_key if access_key is not None else get_env("ACCESS_KEY", "")
            self._secret_key = secret_key if secret_key is not None else get_env("SECRET_KEY", "")
        else:
            self._access_key = "dummy"
            self._secret_key = "dummy"
        self._hash_type = (hash_type or d["hash_type"]).lower()
        self._vfolder_mounts = (
            _vfolder_mounts(vfolder_mounts)
            if vfolder_mounts is not None
            else get_env("VFOLDER_MOUNTS", "", clean=_vfolder_mounts)
        )
        self._skip_sslcert_validation = (
            skip_sslcert_validation
            if skip_sslcert_validation is not None
            else get_env("SKIP_SSLCERT_VALIDATION", "no", clean=_bool)
        )
        self._connection_timeout = (
            connection_timeout
            if connection_timeout is not None
            else get_env("CONNECTION_TIMEOUT", d["connection_timeout"], clean=float)
        )
        self._read_timeout = (
            read_timeout
            if read_timeout is not None
            else get_env("READ_TIMEOUT", d["read_timeout"], clean=float)
        )
        self._announcement_handler = announcement_handler

    @property
    def is_anonymous(self) -> bool:
        return self._access_key == ""

    @property
    def endpoint(self) -> URL:
        """The endpoint requests go to now (the first of ``endpoints``)."""
        return self._endpoints[0]

    @property
    def endpoints(self) -> list[URL]:
        return list(self._endpoints)

    def rotate_endpoints(self) -> None:
        """Moves to the next endpoint, after the current one failed to connect."""
        if len(self._endpoints) > 1:
            self._endpoints.append(self._endpoints.pop(0))

    @property
    def endpoint_type(self) -> str:
        return self._endpoint_type

    @property
    def domain(self) -> str:
        return self._domain

    @property
    def group(self) -> str:
        return self._group

    @property
    def storage_proxy_address_map(self) -> dict[str, str]:
        return dict(self._storage_proxy_address_map)

    @property
    def user_agent(self) -> str:
        return self._user_agent

    @property
    def access_key(self) -> str:
        return self._access_key

    @property
    def secret_key(self) -> str:
        return self._secret_key

    @property
    def version(self) -> str:
        return self._version

    @property
    def hash_type(self) -> str:
        return self._hash_type

    @property
    def vfolder_mounts(self) -> list[str]:
        return list(self._vfolder_mounts)

    @property
    def skip_sslcert_validation(self) -> bool:
        return self._skip_sslcert_validation

    @property
    def connection_timeout(self) -> float:
        return self._connection_timeout

    @property
    def read_timeout(self) -> float:
        return self._read_timeout

    @property
    def announcement_handler(self) -> Callable[[str], None] | None:
        return self._announcement_handler


_config: APIConfig | None = None


def get_config() -> APIConfig:
    """The process-wide default configuration, built from the environment on first use."""
    global _config
    if _config is None:
        _config = APIConfig()
    return _config


def set_config(conf: APIConfig | None) -> None:
    global _config
    _config = conf
