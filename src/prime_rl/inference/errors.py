"""The OpenAI-style error body `{"error": {"message", "type", "param", "code"}}` every failure is answered with."""

from __future__ import annotations

from fastapi.responses import JSONResponse

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    499: "client_closed_request",
    503: "service_unavailable",
}


def error_body(status: int, message: str, param: str | None = None) -> dict:
    error = {"message": message, "type": ERROR_TYPES.get(status, "internal_error"), "param": param, "code": status}
    return {"error": error}


def error_response(status: int, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param), status_code=status)
