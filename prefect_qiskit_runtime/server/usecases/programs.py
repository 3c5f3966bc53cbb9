"""Program use cases: list, upload, read, change, publish and delete programs.

The store enforces who may change what (:class:`~prefect_qiskit_runtime.server.store.ForbiddenError`
for a program of another author, :class:`~prefect_qiskit_runtime.server.store.DuplicateProgramError`
for a taken name); the rules here are the upload right, the idempotency key and the checks of
source and spec.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from prefect_qiskit_runtime.server.schemas import ProgramCreate, ProgramUpdate
from prefect_qiskit_runtime.server.store import Answer, Program, Store, User
from prefect_qiskit_runtime.server.usecases.errors import PermissionDenied, ProgramNotFound
from prefect_qiskit_runtime.server.usecases.validation import (
    check_idempotency_key,
    check_spec,
    decode_source,
)

#: Longest page of a listing, whatever ``limit`` asks for.
MAX_PAGE = 1000
#: Execution-time limit in seconds of a program uploaded without ``cost``.
DEFAULT_COST = 300
#: What an idempotency key of an upload is recorded as having been used for.
UPLOAD_SCOPE = "POST /runtime/programs"

#: Reads an upload's body: its metadata and the program's source text.
UploadReader = Callable[[], Awaitable[tuple[ProgramCreate, str]]]


def list_programs(store: Store, user: User, limit: int, offset: int) -> tuple[list[Program], int]:
    """The caller's programs and every public one, oldest first.

    Args:
        store: The store.
        user: The caller.
        limit: Page size asked for (at most :data:`MAX_PAGE` are returned).
        offset: Programs to skip.

    Returns:
        The page and the exact total.
    """
    return store.list_programs(user.id, min(limit, MAX_PAGE), offset)


async def upload_program(
    store: Store, user: User, idempotency_key: str | None, read_upload: UploadReader
) -> Answer:
    """Create a program, once per idempotency key.

    The body is read only after the upload right and the key were checked, so that a refused or
    repeated upload costs no parsing.

    Args:
        store: The store.
        user: The caller.
        idempotency_key: The ``Idempotency-Key`` header, or ``None``.
        read_upload: Reads and checks the request body.

    Returns:
        201 ``{"id"}``, or the answer first given for the same key.

    Raises:
        PermissionDenied: If the caller may not upload programs.
        InvalidArgument: For a bad key, source or spec (and whatever ``read_upload`` raises).
        DuplicateProgramError: If the caller already has a program of that name.
    """
    if not user.can_upload:
        raise PermissionDenied("This account is not allowed to upload programs.")
    key = check_idempotency_key(idempotency_key)
    if key:
        stored = await run_in_threadpool(store.stored_answer, user.id, key)
        if stored is not None:
            return stored
    body, source = await read_upload()
    fields = _new_program_fields(body, source)

    def create(session: Any) -> Answer:
        program = store.new_program(session, owner_id=user.id, **fields)
        return Answer(201, {"id": program.id})

    return await run_in_threadpool(store.idempotent, user.id, key, UPLOAD_SCOPE, create)


def _new_program_fields(body: ProgramCreate, source: str) -> dict[str, Any]:
    cost = _cost(body.cost, body.max_execution_time)
    return {
        "name": body.name,
        "data": source,
        "cost": cost if cost is not None else DEFAULT_COST,
        "description": body.description,
        "is_public": body.is_public,
        "spec": check_spec(body.spec),
    }


def _cost(cost: int | None, max_execution_time: int | None) -> int | None:
    # The old client says ``cost``, newer ones ``max_execution_time``; ``cost`` wins.
    return cost if cost is not None else max_execution_time


def get_program(store: Store, user: User, program_id: str) -> Program:
    """A program the caller can see.

    Args:
        store: The store.
        user: The caller.
        program_id: The program.

    Returns:
        The program.

    Raises:
        ProgramNotFound: If the caller can see no such program.
    """
    program = store.get_program(program_id, user.id)
    if program is None:
        raise ProgramNotFound(program_id)
    return program


def delete_program(store: Store, user: User, program_id: str) -> None:
    """Delete the caller's program (its jobs stay).

    Args:
        store: The store.
        user: The caller.
        program_id: The program.

    Raises:
        ProgramNotFound: If the caller can see no such program.
        ForbiddenError: If the caller is not its author.
    """
    if not store.delete_program(program_id, user.id):
        raise ProgramNotFound(program_id)


def replace_source(store: Store, user: User, program_id: str, raw: bytes) -> None:
    """Replace a program's source with the one ``raw`` carries as base64 text.

    Args:
        store: The store.
        user: The caller.
        program_id: The program.
        raw: The request body.

    Raises:
        InvalidArgument: ``INVALID_PROGRAM`` if ``raw`` is not base64 of UTF-8 text.
        ProgramNotFound: If the caller can see no such program.
        ForbiddenError: If the caller is not its author.
    """
    _change(store, user, program_id, {"data": decode_source(raw)})


def update_program(store: Store, user: User, program_id: str, body: ProgramUpdate) -> None:
    """Change a program's name, description, cost and/or spec (merged per top-level key).

    Args:
        store: The store.
        user: The caller.
        program_id: The program.
        body: The fields to change; ``None`` ones stay.

    Raises:
        ProgramNotFound: If the caller can see no such program.
        InvalidArgument: ``INVALID_METADATA`` if the merged spec is not valid.
        ForbiddenError: If the caller is not its author.
    """
    program = get_program(store, user, program_id)
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = body.name
    if body.description is not None:
        changes["description"] = body.description
    cost = _cost(body.cost, body.max_execution_time)
    if cost is not None:
        changes["cost"] = cost
    if body.spec is not None:
        changes["spec"] = check_spec({**program.spec_dict, **body.spec})
    _change(store, user, program_id, changes)


def set_visibility(store: Store, user: User, program_id: str, public: bool) -> None:
    """Make a program public (every user may see and run it) or private (only its author).

    Args:
        store: The store.
        user: The caller.
        program_id: The program.
        public: The new visibility.

    Raises:
        ProgramNotFound: If the caller can see no such program.
        ForbiddenError: If the caller is not its author.
    """
    _change(store, user, program_id, {"is_public": public})


def _change(store: Store, user: User, program_id: str, changes: dict[str, Any]) -> None:
    if store.update_program(program_id, user.id, changes) is None:
        raise ProgramNotFound(program_id)


__all__ = [
    "DEFAULT_COST",
    "MAX_PAGE",
    "UploadReader",
    "delete_program",
    "get_program",
    "list_programs",
    "replace_source",
    "set_visibility",
    "update_program",
    "upload_program",
]
