"""``model-definition.yaml``: how a model folder's server starts (runtime-semantics.md s.4.2).

Validated with pydantic so a wrong folder is refused at ``Service.create`` with a message that
names the field, instead of failing later inside a replica.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from portside.errors import InvalidAPIParameters

CANDIDATES = ("model-definition.yaml", "model-definition.yml")
#: Ports the platform itself uses inside a session.
RESERVED_PORTS = frozenset({2000, 2001, 2002, 2003, 2200, 7681})


class HealthCheck(BaseModel):
    model_config = ConfigDict(extra="ignore")
    enable: bool = True
    path: str = "/health"
    interval: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=10, ge=1)
    max_wait_time: float = Field(default=15.0, gt=0)
    expected_status_code: int = 200
    initial_delay: float = Field(default=60.0, ge=0)


class ServiceSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")
    start_command: str | list[str] | None = Field(
        default=None, validation_alias=AliasChoices("start_command", "command", "start-command")
    )
    shell: str | None = "/bin/bash"
    port: int = Field(gt=1, le=65535)
    health_check: HealthCheck | None = None

    @field_validator("port")
    @classmethod
    def _not_reserved(cls, port: int) -> int:
        if port in RESERVED_PORTS:
            raise ValueError(f"port {port} is reserved for the platform")
        return port

    def command_line(self, model_path: str) -> list[str]:
        if self.start_command is None:
            raise InvalidAPIParameters("the model definition has no service.start_command")
        if isinstance(self.start_command, list):
            command = shlex.join(self.start_command)
        else:
            command = self.start_command
        command = command.replace("{model_path}", model_path)
        if self.shell:
            return [self.shell, "-c", f"cd {shlex.quote(model_path)} && exec {command}"]
        return shlex.split(command)


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1)
    model_path: str = Field(min_length=1)
    service: ServiceSpec
    metadata: dict[str, Any] = {}


class ModelDefinition(BaseModel):
    model_config = ConfigDict(extra="ignore")
    models: list[ModelSpec] = Field(min_length=1)

    @property
    def main(self) -> ModelSpec:
        return self.models[0]


def _problems(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in error.errors()
    )


def parse(text: str, source: str = "model-definition.yaml") -> ModelDefinition:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InvalidAPIParameters(f"{source} is not valid YAML: {e}") from e
    try:
        return ModelDefinition.model_validate(data)
    except ValidationError as e:
        raise InvalidAPIParameters(
            f"{source} is not a valid model definition: {_problems(e)}"
        ) from e


def load(folder: Path, definition_path: str | None = None) -> ModelDefinition:
    """Reads the definition from a model folder on this host (``folder`` is its root)."""
    names = [definition_path] if definition_path else list(CANDIDATES)
    root = folder.resolve()
    for name in names:
        path = (root / name).resolve()
        if root not in path.parents:
            raise InvalidAPIParameters(f"{name!r} is not inside the model folder")
        if path.is_file():
            return parse(path.read_text(errors="replace"), name)
    raise InvalidAPIParameters(
        f"the model folder has no {' or '.join(names)}; add one that says how to start the model"
    )
