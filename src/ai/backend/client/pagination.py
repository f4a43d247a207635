"""Offset-paginated GraphQL lists (wire-protocol.md section 4.2, ``paginated_list``).

The servers answer ``<root_field>(limit, offset, ...) { items { ... } total_count }``; the query
text is built to match what the official client sends, so a server that logs or caches queries
sees the same shape from either client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from .exceptions import BackendAPIVersionError
from .func.admin import run_graphql
from .session import BaseSession

__all__ = ("MAX_PAGE_SIZE", "MIN_PAGE_SIZE", "PaginatedResult", "fetch_paginated_result")

MAX_PAGE_SIZE: Final = 100
MIN_PAGE_SIZE: Final = 1

#: ``filter``/``order`` arguments exist only from this API version on.
_FILTER_ORDER_SINCE: Final = (6, "20210815")

T = TypeVar("T")


@dataclass
class PaginatedResult(Generic[T]):
    """One page: ``items`` hold exactly ``fields``, in that order (the CLI zips them)."""

    total_count: int
    items: list[T]
    fields: list[str]


def field_names(fields: str | Sequence[str]) -> list[str]:
    """Accepts ``["id", "image"]`` as well as the GraphQL spelling ``"id image"``."""
    if isinstance(fields, str):
        return fields.split()
    return [str(f) for f in fields]


def build_paginated_query(
    root_field: str, variable_types: Mapping[str, str], fields: Sequence[str]
) -> str:
    declarations = ["$limit:Int!", "$offset:Int!"]
    declarations += [f"${name}: {gql_type}" for name, gql_type in variable_types.items()]
    arguments = ["limit:$limit", "offset:$offset"]
    arguments += [f"{name}:${name}" for name in variable_types]
    return (
        f"query({', '.join(declarations)}) {{\n"
        f"  {root_field}(\n"
        f"      {', '.join(arguments)}) {{\n"
        f"    items {{ {' '.join(fields)} }}\n"
        "    total_count\n"
        "  }\n"
        "}"
    )


async def fetch_paginated_result(
    session: BaseSession,
    root_field: str,
    variables: dict[str, tuple[Any, str]],
    fields: str | Sequence[str],
    *,
    page_offset: int,
    page_size: int,
) -> PaginatedResult[dict[str, Any]]:
    """Fetches one page of ``root_field``; ``variables`` map a name to ``(value, GraphQL type)``."""
    if page_size > MAX_PAGE_SIZE:
        raise ValueError(f"The page size cannot exceed {MAX_PAGE_SIZE}")
    if page_size < MIN_PAGE_SIZE:
        raise ValueError(f"The page size cannot be less than {MIN_PAGE_SIZE}")
    variables = dict(variables)
    if session.api_version < _FILTER_ORDER_SINCE:
        for key in ("filter", "order"):
            value, _ = variables.pop(key, (None, ""))
            if value is not None:
                raise BackendAPIVersionError(
                    "filter and order arguments for paginated lists require v6.20210815 or later."
                )
    names = field_names(fields)
    query = build_paginated_query(
        root_field, {name: gql_type for name, (_, gql_type) in variables.items()}, names
    )
    values: dict[str, Any] = {name: value for name, (value, _) in variables.items()}
    values["limit"] = page_size
    values["offset"] = page_offset
    data = await run_graphql(session, query, values)
    page = data[root_field]
    return PaginatedResult(total_count=page["total_count"], items=page["items"], fields=names)
