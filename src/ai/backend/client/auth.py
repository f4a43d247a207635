"""HMAC request signing (wire-protocol.md section 2.2)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from yarl import URL

__all__ = ("generate_signature",)


def generate_signature(
    *,
    method: str,
    version: str,
    endpoint: URL,
    date: datetime,
    rel_url: str,
    content_type: str,
    access_key: str,
    secret_key: str,
    hash_type: str = "sha256",
) -> tuple[dict[str, str], str]:
    """Returns the ``Authorization`` header for one request, and the bare signature.

    The body is never hashed: every API version this SDK speaks signs the hash of empty bytes.
    """
    hostname = endpoint.raw_authority
    body_hash = hashlib.new(hash_type, b"").hexdigest()
    sign_str = (
        f"{method.upper()}\n{rel_url}\n{date.isoformat()}\nhost:{hostname}\n"
        f"content-type:{content_type.lower()}\nx-backendai-version:{version}\n{body_hash}"
    )
    k_date = hmac.new(secret_key.encode(), date.strftime("%Y%m%d").encode(), hash_type).digest()
    k_host = hmac.new(k_date, hostname.encode(), hash_type).digest()
    signature = hmac.new(k_host, sign_str.encode(), hash_type).hexdigest()
    header = f"BackendAI signMethod=HMAC-{hash_type.upper()}, credential={access_key}:{signature}"
    return {"Authorization": header}, signature
