"""Keypairs, through GraphQL (wire-protocol.md section 6: the ``keypair`` query)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .admin import run_graphql
from .base import BaseFunction, api_function

__all__ = ("KeyPair",)

DEFAULT_DETAIL_FIELDS = ("user_id", "access_key", "secret_key", "is_active", "is_admin")
DEFAULT_LIST_FIELDS = ("user_id", "access_key", "secret_key", "is_active", "is_admin", "created_at")


class KeyPair(BaseFunction):
    """A keypair, addressed by its access key (``api_session.KeyPair(ak).info()``)."""

    def __init__(self, access_key: str) -> None:
        self.access_key = access_key

    @api_function
    async def info(self, fields: Sequence[str] = DEFAULT_DETAIL_FIELDS) -> dict[str, Any]:
        """This keypair's details; a user may read their own, an administrator any."""
        query = (
            "query($access_key: String) { keypair(access_key: $access_key) { "
            + " ".join(fields)
            + " } }"
        )
        data = await run_graphql(self._current_session(), query, {"access_key": self.access_key})
        result: dict[str, Any] = data["keypair"]
        return result

    @classmethod
    @api_function
    async def create(
        cls,
        user_id: str,
        *,
        is_active: bool = True,
        is_admin: bool = False,
        resource_policy: str = "default",
        fields: Sequence[str] = ("access_key", "secret_key"),
    ) -> dict[str, Any]:
        """Creates a keypair for the user with the email ``user_id`` (administrators only)."""
        query = (
            "mutation($user_id: String!, $input: KeyPairInput!) {"
            " create_keypair(user_id: $user_id, props: $input) { ok msg keypair { "
            + " ".join(fields)
            + " } } }"
        )
        variables = {
            "user_id": user_id,
            "input": {
                "is_active": is_active,
                "is_admin": is_admin,
                "resource_policy": resource_policy,
            },
        }
        data = await run_graphql(cls._current_session(), query, variables)
        result: dict[str, Any] = data["create_keypair"]
        return result

    @classmethod
    @api_function
    async def list(
        cls,
        user_id: str | None = None,
        is_active: bool | None = None,
        fields: Sequence[str] = DEFAULT_LIST_FIELDS,
    ) -> Sequence[dict[str, Any]]:
        query = (
            "query($email: String, $is_active: Boolean) {"
            " keypairs(email: $email, is_active: $is_active) { " + " ".join(fields) + " } }"
        )
        variables = {"email": user_id, "is_active": is_active}
        data = await run_graphql(cls._current_session(), query, variables)
        result: Sequence[dict[str, Any]] = data["keypairs"]
        return result
