"""The image registry: Backend.AI image references mapped to local runtimes.

Portside runs no containers; an "image" here names a runtime (a Python interpreter with
ipykernel importable) plus the apps it declares.  References are matched on the canonical name
(``python:3.9-ubuntu20.04``), on Backend.AI's long forms with a registry prefix
(``cr.backend.ai/stable/python:3.9-ubuntu20.04``) and on configured aliases (``python``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from portside.config import ImageConfig
from portside.errors import InvalidAPIParameters
from portside.resources import Slots, parse_binary_size

_PORT_RE = re.compile(r"^(?P<name>[\w-]+):(?P<proto>\w+):(?P<ports>\[\d+(?:,\d+)*\]|\d+)$")
#: Ports the platform itself uses inside a session (runtime-semantics.md s.3.1).
RESERVED_PORTS = frozenset({2000, 2001, 2002, 2003, 2200, 7681})


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str
    protocol: str
    ports: tuple[int, ...]

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "protocol": self.protocol, "ports": list(self.ports)}


def parse_service_port(spec: str) -> ServicePort:
    match = _PORT_RE.match(spec.strip())
    if match is None:
        raise ValueError(f"{spec!r} is not name:protocol:port")
    ports = tuple(int(p) for p in match.group("ports").strip("[]").split(","))
    for port in ports:
        if not 1025 <= port <= 65534 or port in RESERVED_PORTS:
            raise ValueError(f"{spec!r}: port {port} is reserved or out of range")
    return ServicePort(match.group("name"), match.group("proto"), ports)


@dataclass(frozen=True, slots=True)
class ImageApp:
    name: str
    protocol: str
    port: int
    command: tuple[str, ...] | None


@dataclass(frozen=True)
class Image:
    name: str
    python: str
    aliases: tuple[str, ...]
    apps: tuple[ImageApp, ...]
    min_slots: Slots
    registry: str = "local"
    architecture: str = "x86_64"
    _modules: dict[str, bool] = field(default_factory=dict, repr=False, compare=False)

    def has_module(self, module: str) -> bool:
        """Whether the runtime can import ``module`` (asked once, then remembered)."""
        if module not in self._modules:
            probe = subprocess.run(
                [
                    self.python,
                    "-c",
                    f"import importlib.util, sys; "
                    f"sys.exit(importlib.util.find_spec({module!r}) is None)",
                ],
                capture_output=True,
                timeout=60,
            )
            self._modules[module] = probe.returncode == 0
        return self._modules[module]

    @property
    def repository(self) -> str:
        return self.name.partition(":")[0]

    @property
    def tag(self) -> str:
        return self.name.partition(":")[2] or "latest"


class ImageRegistry:
    def __init__(self, images: dict[str, ImageConfig], architecture: str) -> None:
        self._images: dict[str, Image] = {}
        self._lookup: dict[str, Image] = {}
        for name, conf in images.items():
            declared = [parse_service_port(p) for p in conf.service_ports]
            image = Image(
                name=name,
                python=conf.python or sys.executable,
                aliases=tuple(conf.aliases),
                apps=tuple(
                    [ImageApp(p.name, p.protocol, p.ports[0], None) for p in declared]
                    + [
                        ImageApp(app_name, app.protocol, app.port, tuple(app.command))
                        for app_name, app in conf.apps.items()
                    ]
                ),
                min_slots={"cpu": Decimal(conf.min_cpu), "mem": parse_binary_size(conf.min_mem)},
                architecture=architecture,
            )
            self._images[name] = image
            for key in (name, *conf.aliases):
                self._lookup[key] = image

    def __iter__(self) -> Iterator[Image]:
        return iter(self._images.values())

    def resolve(self, reference: str) -> Image:
        """The image a reference names; an unknown one is a 400 that lists what exists."""
        candidates = [reference]
        # "cr.backend.ai/stable/python:3.9-ubuntu20.04" and "index.docker.io/lablup/python:3.6"
        # name the same runtimes as their last path component.
        if "/" in reference:
            candidates.append(reference.rsplit("/", 1)[1])
        for candidate in candidates:
            if candidate in self._lookup:
                return self._lookup[candidate]
        known = ", ".join(sorted(self._images))
        raise InvalidAPIParameters(
            f"unknown image {reference!r}; this server has: {known}",
            data={"known_images": sorted(self._images)},
        )
