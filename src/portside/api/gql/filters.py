"""The small part of Backend.AI's list filter language the clients use.

The official CLI looks services up with ``filter='name == "NAME"'``; conditions of the form
``field == "value"`` and ``field != "value"``, joined with ``&``, are understood.  Anything
else is refused with a message, rather than silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from portside.errors import InvalidAPIParameters

_CONDITION = re.compile(r'^\s*(?P<field>\w+)\s*(?P<op>==|!=)\s*"(?P<value>[^"]*)"\s*$')

Predicate = Callable[[dict[str, Any]], bool]


def parse(expression: str | None, fields: set[str]) -> Predicate:
    if not expression:
        return lambda item: True
    checks: list[tuple[str, str, str]] = []
    for part in expression.split("&"):
        match = _CONDITION.match(part)
        if match is None:
            raise InvalidAPIParameters(
                f'cannot filter by {part.strip()!r}; write field == "value" (joined with &)'
            )
        if match.group("field") not in fields:
            raise InvalidAPIParameters(
                f"cannot filter by {match.group('field')!r}; use one of {', '.join(sorted(fields))}"
            )
        checks.append((match.group("field"), match.group("op"), match.group("value")))

    def predicate(item: dict[str, Any]) -> bool:
        for field, op, value in checks:
            equal = str(item.get(field)) == value
            if equal != (op == "=="):
                return False
        return True

    return predicate
