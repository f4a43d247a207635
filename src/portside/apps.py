"""Which apps a session offers (runtime-semantics.md section 3) and how each one starts.

Every session has the web terminal (``ttyd``, Backend.AI's name for it); Jupyter and
JupyterLab when the image's runtime has them; the apps its image declares in the
configuration; and a ``preopen`` entry per port the session asked to keep open.  Ports are
ports inside the session's own network namespace, so every session may use the same ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from portside.images import Image

TTYD_PORT = 7681


@dataclass(frozen=True, slots=True)
class AppDefinition:
    name: str
    protocol: str
    port: int
    #: The command line, with ``{python}`` and ``{port}`` filled in at start; None means the
    #: session's own code serves the port (protocol ``preopen``).
    command: tuple[str, ...] | None
    env: dict[str, str] = field(default_factory=dict)
    is_inference: bool = False

    def as_service_port(self) -> dict[str, Any]:
        return {"name": self.name, "protocol": self.protocol, "ports": [self.port]}

    def command_line(self, python: str) -> list[str] | None:
        if self.command is None:
            return None
        return [part.format(python=python, port=self.port) for part in self.command]


def _jupyter(name: str, module: str, port: int) -> AppDefinition:
    # No token or password: the app is reachable only through the app proxy, whose permit
    # cookie already proves who the browser belongs to.
    return AppDefinition(
        name,
        "http",
        port,
        (
            "{python}",
            "-m",
            module,
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port={port}",
            "--ServerApp.token=",
            "--ServerApp.password=",
            "--ServerApp.allow_origin=*",
            "--ServerApp.root_dir=.",
            "--ServerApp.allow_remote_access=True",
        ),
    )


def session_apps(image: Image, preopen_ports: Iterable[int]) -> list[AppDefinition]:
    apps = [
        AppDefinition(
            "ttyd",
            "http",
            TTYD_PORT,
            ("{python}", "-m", "portside.kernel.webterm", "--port", "{port}"),
        )
    ]
    if image.has_module("jupyterlab"):
        apps.append(_jupyter("jupyterlab", "jupyterlab", 8090))
    if image.has_module("notebook"):
        apps.append(_jupyter("jupyter", "notebook", 8080))
    for app in image.apps:
        apps.append(
            AppDefinition(
                app.name, app.protocol, app.port, tuple(app.command) if app.command else None
            )
        )
    for port in preopen_ports:
        apps.append(AppDefinition(str(port), "preopen", port, None))
    return apps
