"""Signed tokens, and the cache that spares re-checking a token a client sends again."""

from __future__ import annotations

import time

import pytest

from portside.services import tokens

SECRET = "s" * 48


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    expires_at = int(time.time()) + 1
    token = tokens.issue(SECRET, "permit", {"cid": "c1"}, expires_at)
    verified = tokens.Verified("permit")
    assert verified.verify(SECRET, token)["cid"] == "c1"
    assert verified.verify(SECRET, token)["cid"] == "c1"
    time.sleep(max(0.0, expires_at - time.time()) + 0.05)
    with pytest.raises(tokens.TokenError, match="expired"):
        verified.verify(SECRET, token)


def test_forged_and_foreign_tokens_are_refused_beside_a_remembered_one() -> None:
    token = tokens.issue(SECRET, "permit", {"cid": "c1"}, time.time() + 60)
    verified = tokens.Verified("permit")
    verified.verify(SECRET, token)
    with pytest.raises(tokens.TokenError, match="not valid"):
        verified.verify(SECRET, token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))
    with pytest.raises(tokens.TokenError, match="not valid"):
        verified.verify("another secret " * 4, token)
    other_kind = tokens.issue(SECRET, "service", {"cid": "c1"}, time.time() + 60)
    with pytest.raises(tokens.TokenError, match="something else"):
        verified.verify(SECRET, other_kind)
