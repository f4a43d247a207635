"""The function classes a session exposes as attributes (``api_session.System`` and so on)."""

from __future__ import annotations

from .admin import Admin
from .base import BaseFunction
from .image import Image
from .keypair import KeyPair
from .manager import Manager
from .service import Service
from .session import ComputeSession
from .system import System
from .vfolder import VFolder

#: Each is bound to every new session under its own name.
FUNCTION_CLASSES: tuple[type[BaseFunction], ...] = (
    System,
    Admin,
    KeyPair,
    Manager,
    ComputeSession,
    Image,
    VFolder,
    Service,
)

__all__ = (
    "FUNCTION_CLASSES",
    "Admin",
    "ComputeSession",
    "Image",
    "KeyPair",
    "Manager",
    "Service",
    "System",
    "VFolder",
)
