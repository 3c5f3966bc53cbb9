"""Routes of ``/runtime/programs``: parse the request, call one use case, shape the answer."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from prefect_qiskit_runtime.server.api.parsing import (
    IdempotencyHeader,
    json_body,
    json_request_body,
    parse_json,
    parse_model,
)
from prefect_qiskit_runtime.server.api.render import program_json
from prefect_qiskit_runtime.server.auth import ApiError, current_user
from prefect_qiskit_runtime.server.runtime import runtime_of
from prefect_qiskit_runtime.server.schemas import IdResponse, ProgramCreate, ProgramUpdate
from prefect_qiskit_runtime.server.store import User
from prefect_qiskit_runtime.server.usecases import programs as program_cases
from prefect_qiskit_runtime.server.usecases.validation import decode_source, source_text

_PROGRAM_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ProgramCreate.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "data": {"type": "string", "format": "binary"},
                        "metadata": {"type": "string", "description": "Program metadata as JSON."},
                    },
                    "required": ["data", "metadata"],
                }
            },
        },
    }
}
_RAW_DATA_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string"}}},
    }
}

router = APIRouter()


@router.get("/runtime/programs", tags=["programs"], summary="List programs (oldest first)")
def list_programs(
    request: Request,
    limit: int = Query(20, ge=0, le=10**9),
    offset: int = Query(0, ge=0, le=10**9),
    user: User = Depends(current_user),
) -> dict[str, Any]:
    """The caller's programs and every public one; ``count`` is the exact total."""
    programs, total = program_cases.list_programs(runtime_of(request).store, user, limit, offset)
    return {
        "programs": [program_json(p, user, with_data=False) for p in programs],
        "count": total,
    }


@router.post(
    "/runtime/programs",
    tags=["programs"],
    status_code=201,
    response_model=IdResponse,
    summary="Upload a program (JSON with base64 data, or multipart form)",
    openapi_extra=_PROGRAM_UPLOAD_BODY,
)
async def upload_program(
    request: Request,
    user: User = Depends(current_user),
    idempotency_key: str | None = IdempotencyHeader,
) -> Response:
    """Create a program. 403 without upload permission, 409 for a duplicate name."""
    runtime = runtime_of(request)

    async def read_upload() -> tuple[ProgramCreate, str]:
        return await _read_upload(request, runtime.config.max_upload_bytes)

    answer = await program_cases.upload_program(runtime.store, user, idempotency_key, read_upload)
    return JSONResponse(answer.body, status_code=answer.status_code)


@router.get("/runtime/programs/{program_id}", tags=["programs"], summary="Get a program")
def get_program(request: Request, program_id: str, user: User = Depends(current_user)) -> Any:
    """The program; ``data`` (the source) only for its author."""
    return program_json(
        program_cases.get_program(runtime_of(request).store, user, program_id), user
    )


@router.delete(
    "/runtime/programs/{program_id}",
    tags=["programs"],
    status_code=204,
    summary="Delete a program",
)
def delete_program(
    request: Request, program_id: str, user: User = Depends(current_user)
) -> Response:
    """Delete the caller's program (its jobs stay)."""
    program_cases.delete_program(runtime_of(request).store, user, program_id)
    return Response(status_code=204)


@router.put(
    "/runtime/programs/{program_id}/data",
    tags=["programs"],
    status_code=204,
    summary="Replace a program's source (raw base64 body)",
    openapi_extra=_RAW_DATA_BODY,
)
async def update_program_data(
    request: Request, program_id: str, user: User = Depends(current_user)
) -> Response:
    """The body is the base64 text of the new source; ``update_date`` moves."""
    store = runtime_of(request).store
    raw = await request.body()
    await run_in_threadpool(program_cases.replace_source, store, user, program_id, raw)
    return Response(status_code=204)


@router.patch(
    "/runtime/programs/{program_id}",
    tags=["programs"],
    status_code=204,
    summary="Change a program's metadata",
    openapi_extra=json_request_body(ProgramUpdate),
)
def update_program(
    request: Request,
    program_id: str,
    user: User = Depends(current_user),
    body: ProgramUpdate = Depends(json_body(ProgramUpdate)),
) -> Response:
    """Change name, description, cost and/or spec; ``spec`` is merged per top-level key."""
    program_cases.update_program(runtime_of(request).store, user, program_id, body)
    return Response(status_code=204)


@router.put(
    "/runtime/programs/{program_id}/public",
    tags=["programs"],
    status_code=204,
    summary="Make a program public",
)
def make_public(request: Request, program_id: str, user: User = Depends(current_user)) -> Response:
    """Every user may then see and run it."""
    program_cases.set_visibility(runtime_of(request).store, user, program_id, True)
    return Response(status_code=204)


@router.put(
    "/runtime/programs/{program_id}/private",
    tags=["programs"],
    status_code=204,
    summary="Make a program private",
)
def make_private(request: Request, program_id: str, user: User = Depends(current_user)) -> Response:
    """Only its author may then see and run it."""
    program_cases.set_visibility(runtime_of(request).store, user, program_id, False)
    return Response(status_code=204)


async def _read_upload(request: Request, limit: int) -> tuple[ProgramCreate, str]:
    """The metadata and source of an upload: JSON with base64 data, or a multipart form."""
    content_type = request.headers.get("content-type", "").lower()
    if not content_type.startswith("multipart/form-data"):
        body = parse_model(ProgramCreate, parse_json(await request.body()), "INVALID_METADATA")
        return body, decode_source(body.data)
    try:
        form = await request.form(max_files=4, max_fields=20, max_part_size=limit)
    except StarletteHTTPException:
        raise
    except Exception as exc:
        raise ApiError(400, "INVALID_REQUEST", f"Malformed multipart body: {exc}") from None
    data_field = form.get("data")
    metadata_field = form.get("metadata")
    if data_field is None:
        raise ApiError(400, "INVALID_REQUEST", "The multipart body needs a 'data' part.")
    raw = await data_field.read() if isinstance(data_field, UploadFile) else data_field.encode()
    source = source_text(raw)
    if isinstance(metadata_field, UploadFile):
        metadata_text: str | bytes = await metadata_field.read()
    else:
        metadata_text = metadata_field or "{}"
    try:
        metadata = json.loads(metadata_text)
    except (ValueError, RecursionError):
        raise ApiError(400, "INVALID_METADATA", "The 'metadata' part is not valid JSON.") from None
    if not isinstance(metadata, dict):
        raise ApiError(400, "INVALID_METADATA", "The 'metadata' part must be a JSON object.")
    metadata = {**metadata, "data": "eA=="}  # the source came as a file, not as base64
    return parse_model(ProgramCreate, metadata, "INVALID_METADATA"), source


__all__ = ["router"]
