"""Reading requests: JSON bodies whatever their Content-Type, and the OpenAPI text of the bodies.

Every malformed request becomes a 400 ``INVALID_REQUEST`` (or ``INVALID_METADATA``) with the
service's error body, never FastAPI's 422.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Header, Request
from pydantic import BaseModel, ValidationError

from prefect_qiskit_runtime.server.auth import ApiError

_M = TypeVar("_M", bound=BaseModel)

IdempotencyHeader = Header(
    default=None,
    alias="Idempotency-Key",
    description="Repeating a request with the same key returns the first answer again.",
)


def describe_validation(errors: Any) -> str:
    """One line naming the first five fields a request got wrong.

    Args:
        errors: Pydantic's (or FastAPI's) list of validation errors.

    Returns:
        ``"Invalid request. field: problem; ..."``.
    """
    parts = []
    for err in list(errors)[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "Invalid request. " + "; ".join(parts) if parts else "Invalid request."


def parse_json(raw: bytes) -> Any:
    """Decode a JSON request body.

    Args:
        raw: The body.

    Returns:
        The decoded value.

    Raises:
        ApiError: 400 ``INVALID_REQUEST`` if it is not JSON.
    """
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "INVALID_REQUEST", "The request body is not valid JSON.") from None


def parse_model(model: type[_M], payload: Any, code: str = "INVALID_REQUEST") -> _M:
    """Validate a decoded JSON body as ``model``.

    Args:
        model: The body's model.
        payload: The decoded body.
        code: The error code of a body that does not fit the model.

    Returns:
        The model.

    Raises:
        ApiError: 400 ``INVALID_REQUEST`` if ``payload`` is not an object, 400 ``code`` if it does
            not fit ``model``.
    """
    if not isinstance(payload, dict):
        raise ApiError(400, "INVALID_REQUEST", "The request body must be a JSON object.")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise ApiError(400, code, describe_validation(exc.errors())) from None


def json_body(model: type[_M]) -> Callable[[Request], Awaitable[_M]]:
    """A dependency that parses the body as JSON whatever its Content-Type and validates it.

    The old client sends no Content-Type and curl sends a form type, so the header is not checked.

    Args:
        model: The body's model.

    Returns:
        The dependency; its errors are 400 ``INVALID_REQUEST``.
    """

    async def parse(request: Request) -> _M:
        raw = await request.body()
        return parse_model(model, parse_json(raw) if raw.strip() else None)

    return parse


def json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The ``openapi_extra`` that documents a :func:`json_body` body (FastAPI cannot see it).

    Args:
        model: The body's model.

    Returns:
        An OpenAPI ``requestBody`` fragment.
    """
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


__all__ = [
    "IdempotencyHeader",
    "describe_validation",
    "json_body",
    "json_request_body",
    "parse_json",
    "parse_model",
]
