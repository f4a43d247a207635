"""What every resolver can reach: the platform and the authenticated caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from portside.db.repositories.identity import Principal
from portside.services.platform import Platform


@dataclass(frozen=True, slots=True)
class GQLContext:
    platform: Platform
    principal: Principal


def ctx(info: Any) -> GQLContext:
    context: GQLContext = info.context
    return context
