"""Portside's one typed configuration object.

Values come, in rising priority, from the defaults below, a TOML file (``--config`` or
``PORTSIDE_CONFIG``) and ``PORTSIDE_*`` environment variables.  Every field has a single-node
default, so ``portside serve`` with no file at all runs the whole platform on a laptop.

Environment names are derived from the field path: ``api.port`` is ``PORTSIDE_API_PORT``,
``database_url`` is ``PORTSIDE_DATABASE_URL``.  Values are parsed as TOML scalars where they can
be (``8090``, ``true``, ``["a", "b"]``) and taken as plain strings otherwise.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_PREFIX = "PORTSIDE_"


class ConfigError(Exception):
    """The configuration file or environment holds a value Portside cannot use."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListenConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    #: The URL clients should use to reach this listener, when it differs from host:port
    #: (behind a reverse proxy, say).  Empty means ``http://{host}:{port}``.
    advertise_url: str = ""


class AppProxyConfig(ListenConfig):
    port: int = Field(default=8091, ge=0, le=65535)
    #: How long a start-service token and a browser permit stay valid, in seconds.
    token_ttl: float = 3600.0


class MockAcceleratorConfig(_Section):
    """A fake accelerator, like Backend.AI's mock plugin: slots to schedule, no device."""

    #: Whole devices (``cuda.device``).
    devices: int = 0
    #: Fractional shares (``cuda.shares``).
    shares: Decimal = Decimal(0)


class ResourcesConfig(_Section):
    #: Capacity offered by the local agent; 0 means "what this machine has".
    cpu: int = 0
    mem: str = "0"
    mock_cuda: MockAcceleratorConfig = MockAcceleratorConfig()
    #: Detect real NVIDIA GPUs with nvidia-smi and offer them as ``cuda.device``.
    detect_gpus: bool = True


class AppConfig(_Section):
    """An app an image offers: ``{python}`` and ``{port}`` in the command are filled in."""

    command: list[str]
    port: int = Field(ge=1025, le=65534)
    protocol: Literal["http", "tcp"] = "http"


class ImageConfig(_Section):
    #: The Python interpreter (with ipykernel importable) that runs this image's kernels.
    #: Empty means the interpreter running Portside.
    python: str = ""
    aliases: list[str] = []
    #: Ports the session's own code serves, as ``name:protocol:port`` (Backend.AI's
    #: ``ai.backend.service-ports`` label).
    service_ports: list[str] = []
    #: Apps Portside starts on request (``start-service``), beside the built-in ones.
    apps: dict[str, AppConfig] = {}
    min_cpu: int = 1
    min_mem: str = "256m"


def _default_images() -> dict[str, ImageConfig]:
    return {
        "python:3.9-ubuntu20.04": ImageConfig(aliases=["python:3.9"]),
        "python:3.6-ubuntu18.04": ImageConfig(aliases=["python:3.6"]),
        "python:latest": ImageConfig(aliases=["python", "python3"]),
    }


class AgentConfig(_Section):
    backend: Literal["local", "ray"] = "local"
    #: Warm kernels kept ready per interpreter (images that share one share the pool), so a
    #: session starts without booting one.
    pool_size: int = Field(default=2, ge=0)
    #: "auto" uses bubblewrap when it works here; "none" runs kernels as plain processes
    #: (a loud warning says so).
    sandbox: Literal["auto", "bwrap", "none"] = "auto"
    #: The unprivileged uids kernels run as when the server runs as root.
    uid_base: int = 20000
    #: Where kernels' sockets, logs and state files go (a directory of this server's inside
    #: it); empty means ``$XDG_RUNTIME_DIR`` or ``/dev/shm``, memory file systems, else the
    #: data directory.  Session files stay in the data directory (agent/local/layout.py).
    run_dir: str = ""
    #: Ray cluster address for the ``ray`` backend: "local" starts a Ray head inside the server
    #: (bound to 127.0.0.1, its files in ``<data_dir>/ray``), "auto" joins the cluster a
    #: ``ray start`` on this machine made, ``host:port`` joins that cluster's head.
    ray_address: str = "local"
    #: The address Ray uses for the server's own node; empty lets Ray choose (the machine's
    #: routed address), except for a "local" head or a loopback ``ray_address``, which keep
    #: every Ray connection on 127.0.0.1.
    ray_node_ip: str = ""
    #: Where each Ray node keeps its kernels' directories (``<dir>/<node id>``); empty means
    #: ``<data_dir>/nodes``.  Data folders must be at the same path on every node.
    ray_node_dir: str = ""


class Config(_Section):
    data_dir: Path = Path(platformdirs.user_data_dir("portside"))
    #: SQLAlchemy URL; empty means SQLite in the data directory.
    database_url: str = ""
    #: Seeds Backend.AI's well-known example keypairs.  Never on in production.
    dev: bool = False
    #: Signs app-proxy tokens and model-service JWTs.  Empty: generated once and kept in the
    #: data directory; servers sharing a database must set the same value.
    secret_key: str = ""
    log_level: Literal["debug", "info", "warning", "error"] = "warning"
    log_format: Literal["text", "json"] = "text"
    api: ListenConfig = ListenConfig()
    appproxy: AppProxyConfig = AppProxyConfig()
    agent: AgentConfig = AgentConfig()
    resources: ResourcesConfig = ResourcesConfig()
    images: dict[str, ImageConfig] = Field(default_factory=_default_images)
    #: Seconds a session may sit idle before it is terminated, unless its keypair's resource
    #: policy says otherwise.  0 disables the check.
    idle_timeout: float = 600.0
    #: The size quota of a new data folder when its creator names none, in bytes (0: none).
    vfolder_quota: int = Field(default=0, ge=0)
    #: Per-file and per-request limits for session file uploads, in bytes.
    max_upload_file_size: int = 64 * 1024 * 1024
    max_upload_total_size: int = 256 * 1024 * 1024

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'portside.db'}"

    @property
    def api_url(self) -> str:
        return self.api.advertise_url or f"http://{self.api.host}:{self.api.port}"

    @property
    def appproxy_url(self) -> str:
        return self.appproxy.advertise_url or f"http://{self.appproxy.host}:{self.appproxy.port}"


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _env_overrides(
    model: type[BaseModel], environ: Mapping[str, str], prefix: str
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        env_name = f"{prefix}{name.upper()}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            nested = _env_overrides(annotation, environ, env_name + "_")
            if nested:
                found[name] = nested
        elif env_name in environ:
            found[name] = _parse_env_value(environ[env_name])
    return found


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Config:
    """Build the configuration from a TOML file, the environment and explicit overrides."""
    environ = os.environ if environ is None else environ
    if path is None and environ.get(ENV_PREFIX + "CONFIG"):
        path = Path(environ[ENV_PREFIX + "CONFIG"])
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError as e:
            raise ConfigError(f"config file {path} does not exist") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
    data = _merge(data, _env_overrides(Config, environ, ENV_PREFIX))
    data = _merge(data, {k: v for k, v in overrides.items() if v is not None})
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from e
