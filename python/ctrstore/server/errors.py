"""The errors a registry answers, in the distribution spec's shape.

Every failed request gets a status code and a JSON body
``{"errors": [{"code": "MANIFEST_UNKNOWN", "message": "...", "detail": ...}]}``; the codes are
the OCI distribution spec's (``BLOB_UNKNOWN``, ``DIGEST_INVALID``, ...) plus distribution's own
``RANGE_INVALID`` and ``NOT_FOUND`` for a path that is no API endpoint. ``from_errdefs`` maps the
store's errors (``ctrstore.errdefs``) to one of them, once.
"""

from __future__ import annotations

import json
from typing import Any

from ctrstore.errdefs import (
    AlreadyExists,
    CtrstoreError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)

__all__ = ["ApiError", "from_errdefs"]


class ApiError(Exception):
    """One error answer: HTTP ``status``, spec ``code``, a message naming what was wrong, and
    extra headers (``WWW-Authenticate``, ``Range``, ...)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            err["detail"] = self.detail
        return json.dumps({"errors": [err]}).encode()


def from_errdefs(e: CtrstoreError, code: str = "") -> ApiError:
    """The answer for a store error. ``code`` is the spec code a NotFound or InvalidArgument
    means where it happened (``BLOB_UNKNOWN``, ``DIGEST_INVALID``...)."""
    msg = str(e)
    if isinstance(e, NotFound):
        return ApiError(404, code or "NOT_FOUND", msg)
    if isinstance(e, InvalidArgument):
        return ApiError(400, code or "UNKNOWN", msg)
    if isinstance(e, FailedPrecondition):
        return ApiError(400, code or "UNKNOWN", msg)
    if isinstance(e, AlreadyExists):
        return ApiError(409, code or "UNKNOWN", msg)
    if isinstance(e, Unauthenticated):
        return ApiError(401, "UNAUTHORIZED", msg)
    if isinstance(e, PermissionDenied):
        return ApiError(403, "DENIED", msg)
    if isinstance(e, Unimplemented):
        return ApiError(405, "UNSUPPORTED", msg)
    if isinstance(e, ResourceExhausted):
        return ApiError(507, "UNKNOWN", msg)
    if isinstance(e, Unavailable):
        return ApiError(503, "UNAVAILABLE", msg, headers={"Retry-After": "1"})
    return ApiError(500, "UNKNOWN", f"{e.kind}: {msg}")
