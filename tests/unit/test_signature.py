"""The section 2.2 test vector, signed by our SDK and checked by our server's verifier."""

from __future__ import annotations

from datetime import datetime

import pytest
from yarl import URL

from ai.backend.client.auth import generate_signature
from portside.api.auth import compute_signature, parse_api_version, parse_authorization
from portside.errors import InvalidAPIParameters, InvalidAuthParameters

AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
RAW_DATE = "2025-01-02T03:04:05.678901+00:00"
EXPECTED = "03de3c95fa26378381826a402ce306d3e082c78974f10c36e02ccf9c13d90304"


def test_sdk_signs_the_reference_vector() -> None:
    headers, signature = generate_signature(
        method="GET",
        version="v9.20250722",
        endpoint=URL("http://127.0.0.1:8081"),
        date=datetime.fromisoformat(RAW_DATE),
        rel_url="/session/mysess?owner_access_key=AK2",
        content_type="text/plain",
        access_key=AK,
        secret_key=SK,
    )
    assert signature == EXPECTED
    assert headers["Authorization"] == (
        f"BackendAI signMethod=HMAC-SHA256, credential={AK}:{EXPECTED}"
    )


def test_server_verifies_what_the_sdk_signed() -> None:
    headers, _ = generate_signature(
        method="GET",
        version="v9.20250722",
        endpoint=URL("http://127.0.0.1:8081"),
        date=datetime.fromisoformat(RAW_DATE),
        rel_url="/session/mysess?owner_access_key=AK2",
        content_type="text/plain",
        access_key=AK,
        secret_key=SK,
    )
    params = parse_authorization(headers["Authorization"])
    assert (params.access_key, params.hash_type) == (AK, "sha256")
    expected = compute_signature(
        secret_key=SK,
        hash_type=params.hash_type,
        method="GET",
        path_and_query="/session/mysess?owner_access_key=AK2",
        raw_date=RAW_DATE,
        date=datetime.fromisoformat(RAW_DATE),
        host="127.0.0.1:8081",
        content_type="text/plain",
        api_version="v9.20250722",
    )
    assert expected == params.signature == EXPECTED


def test_a_changed_query_changes_the_signature() -> None:
    common = dict(
        secret_key=SK,
        hash_type="sha256",
        method="GET",
        raw_date=RAW_DATE,
        date=datetime.fromisoformat(RAW_DATE),
        host="127.0.0.1:8081",
        content_type="text/plain",
        api_version="v9.20250722",
    )
    assert compute_signature(path_and_query="/session/mysess?owner_access_key=AK3", **common) != (
        EXPECTED
    )


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "BackendAI credential=AK:SIG",
        "BackendAI signMethod=HMAC-SHA256",
        "BackendAI signMethod=HMAC-NOPE, credential=AK:SIG",
        "BackendAI signMethod=HMAC-SHA256, credential=AKONLY",
        "BackendAI garbage",
    ],
)
def test_malformed_authorization_headers_are_rejected(header: str) -> None:
    with pytest.raises(InvalidAuthParameters):
        parse_authorization(header)


def test_api_versions_v4_to_v9_are_accepted() -> None:
    for major in range(4, 10):
        assert parse_api_version(f"v{major}.20250101")[0] == major
    for bad in ("v3.20170615", "v10.20300101", "9.20250722", "v9.2025"):
        with pytest.raises(InvalidAPIParameters):
            parse_api_version(bad)
