"""The small typed error hierarchy every layer raises and the HTTP layer renders.

Each error knows its HTTP status and renders as OpenAI's error body
`{"error": {"message", "type", "param", "code"}}`, so the SDK raises the matching exception class
with the message users already match on.
"""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    status_code = 500
    type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(APIError):
    """400: bad input or a state conflict (OpenAI answers conflicts with 400, never 409,
    because the SDK silently retries 409)."""

    status_code = 400
    type = "invalid_request_error"


class AuthenticationFailed(APIError):
    status_code = 401
    type = "invalid_request_error"


class NotFound(APIError):
    status_code = 404
    type = "invalid_request_error"

    @classmethod
    def object(cls, kind: str, object_id: str, *, param: str | None = None) -> NotFound:
        return cls(f"No {kind} found with id '{object_id}'.", param=param)


class MethodNotAllowed(APIError):
    status_code = 405
    type = "invalid_request_error"


class RequestTooLarge(APIError):
    status_code = 413
    type = "invalid_request_error"


class ServiceUnavailable(APIError):
    status_code = 503
    type = "server_error"
