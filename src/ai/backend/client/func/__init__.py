"""The function classes a session exposes as attributes (``api_session.System`` and so on)."""

from __future__ import annotations

from .admin import Admin
from .base import BaseFunction
from .image import Image
from .keypair import KeyPair
from .manager import Manager
from .session import ComputeSession
from .system import System

#: Each is bound to every new session under its own name.
FUNCTION_CLASSES: tuple[type[BaseFunction], ...] = (
    System,
    Admin,
    KeyPair,
    Manager,
    ComputeSession,
    Image,
)

__all__ = (
    "FUNCTION_CLASSES",
    "Admin",
    "ComputeSession",
    "Image",
    "KeyPair",
    "Manager",
    "System",
)
