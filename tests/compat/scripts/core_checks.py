"""Runs inside an official client's venv: the core calls, printed as one JSON line."""

import asyncio
import json
import sys

from ai.backend.client.request import Request
from ai.backend.client.session import AsyncSession, Session

results = {}
with Session() as api_session:
    results["versions"] = dict(api_session.System.get_versions())
    results["status"] = dict(api_session.Manager.status())
    results["keypair"] = dict(api_session.KeyPair(api_session.config.access_key).info())


async def echo() -> dict:
    async with AsyncSession():
        rqst = Request("GET", "/auth")
        rqst.set_json({"echo": sys.argv[1]})
        async with rqst.fetch() as resp:
            return dict(await resp.json())


results["echo"] = asyncio.run(echo())
print(json.dumps(results, default=str))
