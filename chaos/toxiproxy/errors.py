"""The errors the REST API returns, with Toxiproxy's messages and status codes.

Toxiproxy answers every failure with ``{"error": "<message>", "status": <code>}``; clients (the Go,
Ruby and Python ones) branch on the status code (404 not found, 409 already exists, 400 invalid), so
the codes and the leading words of the messages are kept identical.
"""

from __future__ import annotations


class ApiError(Exception):
    """A failure reported to the API caller as ``{"error": message, "status": status}``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def with_detail(self, detail: str) -> ApiError:
        """A copy whose message is ``"<message>: <detail>"`` (Toxiproxy's ``joinError``)."""
        return ApiError(f"{self.message}: {detail}", self.status)

    def to_json(self) -> dict[str, object]:
        return {"error": self.message, "status": self.status}


BAD_REQUEST_BODY = ApiError("bad request body", 400)
MISSING_FIELD = ApiError("missing required field", 400)
PROXY_NOT_FOUND = ApiError("proxy not found", 404)
PROXY_EXISTS = ApiError("proxy already exists", 409)
INVALID_STREAM = ApiError("stream was invalid, can be either upstream or downstream", 400)
INVALID_TOXIC_TYPE = ApiError("invalid toxic type", 400)
TOXIC_EXISTS = ApiError("toxic already exists", 409)
TOXIC_NOT_FOUND = ApiError("toxic not found", 404)
# Not in Toxiproxy: this implementation refuses to listen on or connect to anything but loopback.
ADDRESS_NOT_ALLOWED = ApiError("address not allowed", 400)
