"""HMAC request authentication, exactly as the official client signs (wire-protocol.md section 2).

The client signs the method, the raw request target, the raw ``Date`` header, the host it was
configured with, a content type, the API version and the hash of an *empty* body.  The server
rebuilds the same string from what it received and compares digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dateutil.parser
from aiohttp import web

from portside.db.repositories.identity import Principal
from portside.errors import AuthFailed, InvalidAPIParameters, InvalidAuthParameters

from .context import PLATFORM
from .errors import Handler

MAX_CLOCK_SKEW = timedelta(minutes=15)
_VERSION_RE = re.compile(r"^v(\d+)\.(\d{8})$")
#: Backend.AI API majors this server speaks (section 3): every client from v4 to v9.
SUPPORTED_MAJORS = range(4, 10)
SERVER_API_VERSION = "v9.20250722"


@dataclass(frozen=True, slots=True)
class SignatureParams:
    """What an ``Authorization: BackendAI signMethod=HMAC-X, credential=AK:SIG`` header says."""

    hash_type: str
    access_key: str
    signature: str


def parse_api_version(value: str) -> tuple[int, str]:
    match = _VERSION_RE.match(value)
    if match is None:
        raise InvalidAPIParameters(f"Unsupported API version: {value!r}")
    major = int(match.group(1))
    if major not in SUPPORTED_MAJORS:
        raise InvalidAPIParameters(
            f"Unsupported API version: {value!r} (this server speaks v4 to v9)"
        )
    return major, match.group(2)


def parse_authorization(header: str) -> SignatureParams:
    auth_type, _, params_text = header.strip().partition(" ")
    if auth_type not in ("BackendAI", "Sorna"):
        raise InvalidAuthParameters(f"unsupported authorization type {auth_type!r}")
    params: dict[str, str] = {}
    for item in params_text.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise InvalidAuthParameters("malformed authorization parameters")
        params[key] = value
    try:
        method = params["signMethod"]
        access_key, _, signature = params["credential"].partition(":")
    except KeyError as e:
        raise InvalidAuthParameters(f"the authorization header lacks {e.args[0]}") from e
    sign_type, _, hash_type = method.partition("-")
    hash_type = hash_type.lower()
    if sign_type != "HMAC" or hash_type not in hashlib.algorithms_guaranteed:
        raise InvalidAuthParameters(f"unsupported signMethod {method!r}")
    if not access_key or not signature:
        raise InvalidAuthParameters("the credential must be ACCESS_KEY:SIGNATURE")
    return SignatureParams(hash_type, access_key, signature)


def parse_request_date(raw: str, now: datetime) -> datetime:
    try:
        # The official clients send ISO 8601, which the standard library reads in microseconds;
        # dateutil (ten times slower) is for any other spelling.
        date = datetime.fromisoformat(raw)
    except ValueError:
        try:
            date = dateutil.parser.parse(raw)
        except (ValueError, OverflowError) as e:
            raise InvalidAuthParameters(f"cannot parse the Date header {raw!r}") from e
    if date.tzinfo is None:
        date = date.replace(tzinfo=UTC)
    if abs(now - date) > MAX_CLOCK_SKEW:
        raise InvalidAuthParameters(
            "Date/time sync error: the request's Date is more than 15 minutes away from the "
            f"server's clock ({now.isoformat()})"
        )
    return date


def compute_signature(
    *,
    secret_key: str,
    hash_type: str,
    method: str,
    path_and_query: str,
    raw_date: str,
    date: datetime,
    host: str,
    content_type: str,
    api_version: str,
) -> str:
    """The server's reading of section 2.2: the digest a correct client sends for this request."""
    body_hash = hashlib.new(hash_type, b"").hexdigest()
    sign_str = (
        f"{method.upper()}\n{path_and_query}\n{raw_date}\nhost:{host}\n"
        f"content-type:{content_type.lower()}\nx-backendai-version:{api_version}\n{body_hash}"
    )
    k_date = hmac.new(secret_key.encode(), date.strftime("%Y%m%d").encode(), hash_type).digest()
    k_host = hmac.new(k_date, host.encode(), hash_type).digest()
    return hmac.new(k_host, sign_str.encode(), hash_type).hexdigest()


def _host_variants(request: web.Request) -> list[str]:
    # The client signs the authority as written in its endpoint URL ("h:80"), while aiohttp's
    # client omits a default port from the Host header ("h"); accept both spellings.
    host = request.host
    variants = [host]
    default_port = "443" if request.scheme == "https" else "80"
    if ":" not in host.rsplit("]", 1)[-1]:
        variants.append(f"{host}:{default_port}")
    elif host.endswith(":" + default_port):
        variants.append(host[: -len(default_port) - 1])
    return variants


async def authenticate(request: web.Request) -> Principal | None:
    """Check the request's signature; None when it carries none."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    now = datetime.now(UTC)
    raw_date = (
        request.headers.get("Date")
        or request.headers.get("X-BackendAI-Date")
        or request.headers.get("X-Sorna-Date")
    )
    if not raw_date:
        raise InvalidAuthParameters("a signed request needs a Date header")
    date = parse_request_date(raw_date, now)
    params = parse_authorization(header)
    api_version = request.headers.get("X-BackendAI-Version", "")
    parse_api_version(api_version)
    key = await request.app[PLATFORM].keys.get(params.access_key)
    if key is None:
        raise AuthFailed("the access key is unknown or inactive")
    for host in _host_variants(request):
        expected = compute_signature(
            secret_key=key.secret_key,
            hash_type=params.hash_type,
            method=request.method,
            path_and_query=request.raw_path,
            raw_date=raw_date,
            date=date,
            host=host,
            content_type=request.content_type,
            api_version=api_version,
        )
        if hmac.compare_digest(expected, params.signature):
            return key.principal
    raise AuthFailed("the signature does not match the request")


def public(handler: Handler) -> Handler:
    """Marks a handler that answers unsigned requests too (a signed one is still verified)."""
    handler.portside_public = True  # type: ignore[attr-defined]
    return handler


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    principal = await authenticate(request)
    request["principal"] = principal
    if request.match_info.http_exception is not None:
        # An unknown path or method: let the router's 404/405 through, signed or not.
        return await handler(request)
    target = getattr(request.match_info.route, "handler", None)
    if principal is None and not getattr(target, "portside_public", False):
        raise AuthFailed("Unauthorized access: the request carries no signature")
    return await handler(request)


def require_principal(request: web.Request) -> Principal:
    principal: Principal | None = request.get("principal")
    if principal is None:
        raise AuthFailed("Unauthorized access: the request carries no signature")
    return principal
