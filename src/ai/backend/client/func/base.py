"""How API functions are written once and serve both session flavours.

A function class (``System``, ``ComputeSession``, ...) declares its calls as coroutines wrapped
with ``api_function``.  The wrapper finds the session the call belongs to: the one the class
was bound to (``api_session.System``), else the current ``api_session``.  In an
``AsyncSession`` the coroutine is returned for the caller to await; in a ``Session`` it is run
to completion on the session's worker loop and its result returned.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Concatenate, ParamSpec, TypeVar, cast

from ..exceptions import BackendClientError
from ..request import Request
from ..session import BaseSession, Session, api_session

__all__ = ("BaseFunction", "api_function")

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")


def _session_of(owner: Any) -> BaseSession:
    session: BaseSession | None = getattr(owner, "_session", None)
    if session is not None:
        return session
    try:
        return api_session.get()
    except LookupError:
        raise BackendClientError(
            "API functions must be called inside a Session or AsyncSession "
            "(`with Session() as api_session:`)"
        ) from None


def api_function(
    meth: Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[S, P], Any]:
    """Makes ``meth`` return its result in a ``Session``, a coroutine in an ``AsyncSession``."""

    @functools.wraps(meth)
    def wrapper(owner: S, *args: P.args, **kwargs: P.kwargs) -> Any:
        session = _session_of(owner)
        coro = meth(owner, *args, **kwargs)
        if isinstance(session, Session):
            return session.run(coro)
        return coro

    return cast(Callable[Concatenate[S, P], Any], wrapper)


class BaseFunction:
    """The base of function classes; ``_session`` is set on the copies bound to a session."""

    _session: ClassVar[BaseSession | None] = None

    @classmethod
    def _current_session(cls) -> BaseSession:
        return _session_of(cls)

    @classmethod
    def _request(cls, method: str, path: str, **kwargs: Any) -> Request:
        return Request(method, path, session=cls._current_session(), **kwargs)
