"""Runs inside an official client's venv: one way of signing wrongly, and what the server says."""

import json
import sys
from datetime import datetime, timedelta

import ai.backend.client.request as request_module
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session

case = sys.argv[1]
if case == "skewed-date":

    class SkewedDatetime(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.now(tz) - timedelta(minutes=20)

    request_module.datetime = SkewedDatetime
elif case == "malformed-header":

    def malformed(*args, **kwargs):
        return {"Authorization": "BackendAI this-is-not-valid"}, "x"

    request_module.generate_signature = malformed

try:
    with Session() as api_session:
        api_session.Manager.status()
except BackendAPIError as e:
    print(json.dumps({"status": e.status, "type": e.data.get("type", "")}))
else:
    print(json.dumps({"status": 200}))
