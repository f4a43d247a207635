"""Errors a user can see, each rendered as an RFC 7807 problem (wire-protocol.md section 5).

Every layer raises these; the API's error middleware turns them into
``application/problem+json`` responses.  The ``type`` slugs and titles follow Backend.AI's, so
the official client (which shows ``title`` and ``msg``) reads them as it reads the real manager's.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_BASE = "https://api.backend.ai/probs/"


class PortsideError(Exception):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-server-error"
    title: ClassVar[str] = "Something went wrong inside the server."
    error_code: ClassVar[str] = "generic_internal_error"

    def __init__(self, msg: str | None = None, *, data: Any = None) -> None:
        super().__init__(msg or self.title)
        self.msg = msg
        self.data = data

    def to_problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "error_code": self.error_code,
        }
        if self.msg:
            body["msg"] = self.msg
        if self.data is not None:
            body["data"] = self.data
        return body


class InvalidAuthParameters(PortsideError):
    status = 400
    slug = "invalid-auth-params"
    title = "Missing or invalid authorization parameters."
    error_code = "auth_verify_bad-request"


class AuthFailed(PortsideError):
    status = 401
    slug = "auth-failed"
    title = "Credential/signature mismatch."
    error_code = "auth_verify_unauthorized"


class GenericForbidden(PortsideError):
    status = 403
    slug = "generic-forbidden"
    title = "Forbidden operation."
    error_code = "generic_access_forbidden"


class InsufficientPrivilege(PortsideError):
    status = 403
    slug = "insufficient-privilege"
    title = "Insufficient privilege."
    error_code = "generic_access_forbidden"


class URLNotFound(PortsideError):
    status = 404
    slug = "url-not-found"
    title = "Unknown URL path."
    error_code = "api_read_not-found"


class MethodNotAllowed(PortsideError):
    status = 405
    slug = "method-not-allowed"
    title = "Method not allowed for this path."
    error_code = "api_access_method-not-allowed"


class ObjectNotFound(PortsideError):
    """A named thing (session, folder, service, keypair) does not exist or is not yours."""

    status = 404
    slug = "object-not-found"
    title = "No such object."
    error_code = "generic_read_not-found"

    def __init__(self, msg: str | None = None, *, object_name: str = "object", data: Any = None):
        super().__init__(msg, data=data)
        self.object_name = object_name

    def to_problem(self) -> dict[str, Any]:
        body = super().to_problem()
        body["title"] = f"No such {self.object_name}."
        body["error_code"] = f"{self.object_name.replace(' ', '-')}_read_not-found"
        return body


class InvalidAPIParameters(PortsideError):
    status = 400
    slug = "invalid-api-params"
    title = "Missing or invalid API parameters."
    error_code = "api_parsing_invalid-parameters"


class RequestTooLarge(PortsideError):
    status = 413
    slug = "request-too-large"
    title = "The request is larger than this server accepts."
    error_code = "api_parsing_too-large"


class SessionAlreadyExists(PortsideError):
    status = 400
    slug = "session-already-exists"
    title = "The session already exists but you requested not to reuse existing one."
    error_code = "session_create_already-exists"


class InvalidSessionState(PortsideError):
    status = 409
    slug = "session-invalid-state"
    title = "The session is not in a state that allows this operation."
    error_code = "session_update_invalid-state"


class QuotaExceeded(PortsideError):
    status = 412
    slug = "quota-exceeded"
    title = "You have reached your resource limit."
    error_code = "generic_update_quota-exceeded"


class Conflict(PortsideError):
    status = 409
    slug = "generic-conflict"
    title = "The request conflicts with the current state."
    error_code = "generic_update_conflict"


class KernelError(PortsideError):
    status = 500
    slug = "kernel-execution-failed"
    title = "The kernel could not run the request."
    error_code = "kernel_execute_failure"


class KernelCreationFailed(PortsideError):
    status = 500
    slug = "kernel-creation-failed"
    title = "Kernel creation has failed."
    error_code = "kernel_create_failure"


class NotImplementedAPI(PortsideError):
    status = 501
    slug = "not-implemented"
    title = "This API is not implemented."
    error_code = "api_generic_not-implemented"


class ServiceUnavailable(PortsideError):
    status = 503
    slug = "service-unavailable"
    title = "The service is not available right now."
    error_code = "generic_generic_unavailable"


class InternalServerError(PortsideError):
    status = 500
    slug = "internal-server-error"
    title = "Something went wrong inside the server."
    error_code = "generic_internal_error"
