"""Tasks on programs: upload (or update an existing one), delete, list."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import task

from prefect_qiskit_runtime.core.exceptions import (
    QiskitRuntimeError,
    RuntimeDuplicateProgramError,
    RuntimeProgramNotFound,
)
from prefect_qiskit_runtime.prefect import _utils as pu
from prefect_qiskit_runtime.prefect.tasks._common import (
    _COMMON,
    CredentialsLike,
    _attempts,
    _service,
)

if TYPE_CHECKING:
    from prefect_qiskit_runtime.client import RuntimeService


def _upload_program(
    credentials: CredentialsLike,
    data: str | Path,
    metadata: dict[str, Any] | str | None,
    name: str | None,
    description: str | None,
    max_execution_time: int | None,
    is_public: bool,
    exist_ok: bool,
    extra: Mapping[str, Any],
) -> str:
    service = _service(credentials)
    logger = pu.run_logger()
    source = str(data) if isinstance(data, Path) else data
    kwargs: dict[str, Any] = {
        "name": name,
        "description": description,
        "max_execution_time": max_execution_time,
        "is_public": is_public,
        **extra,
    }
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        program_id = service.upload_program(
            source, metadata, idempotency_key=pu.task_run_key("upload"), **kwargs
        )
    except RuntimeDuplicateProgramError:
        if not exist_ok:
            raise
        program_id = _replace_program(service, source, metadata, kwargs)
        logger.info("Updated existing runtime program %s", program_id)
        return program_id
    except QiskitRuntimeError as exc:
        pu.cap_attempts(exc, _attempts(credentials))
        raise
    logger.info("Uploaded runtime program %s", program_id)
    return str(program_id)


def _replace_program(
    service: RuntimeService,
    source: str,
    metadata: dict[str, Any] | str | None,
    kwargs: dict[str, Any],
) -> str:
    """Update the caller's program of the same name with new source and metadata."""
    meta: dict[str, Any] = {}
    if isinstance(metadata, str):
        import json

        meta = json.loads(Path(metadata).read_text())
    elif metadata:
        meta = dict(metadata)
    name = kwargs.get("name") or meta.get("name")
    for program in service.programs(refresh=True, limit=None):
        if program.name == name:
            update = {k: kwargs[k] for k in ("description", "max_execution_time") if k in kwargs}
            service.update_program(program.program_id, data=source, metadata=meta, **update)
            return str(program.program_id)
    raise RuntimeProgramNotFound(f"A program named {name!r} exists but is not yours to update.")


def _delete_program(credentials: CredentialsLike, program_id: str, missing_ok: bool) -> None:
    try:
        _service(credentials).delete_program(program_id)
    except RuntimeProgramNotFound:
        if not missing_ok:
            raise
    pu.run_logger().info("Deleted runtime program %s", program_id)


def _list_programs(credentials: CredentialsLike, limit: int | None) -> list[dict[str, Any]]:
    programs = _service(credentials).programs(refresh=True, limit=limit)
    return [p.to_dict() for p in programs]


@task(name="upload-runtime-program", **_COMMON)
def upload_program(
    credentials: CredentialsLike,
    data: str | Path,
    metadata: dict[str, Any] | str | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    max_execution_time: int | None = None,
    is_public: bool = False,
    exist_ok: bool = False,
    extra_metadata: dict[str, Any] | None = None,
) -> str:
    """Upload a runtime program (source and metadata) and return its id.

    A retry of the task never uploads twice: the request carries an idempotency key derived from
    the task run.

    Args:
        credentials: The service to upload to.
        data: The program source, or the path of a ``.py`` file.
        metadata: Program metadata as a dict or a JSON file path (flat or ``spec`` form).
        name: Program name (overrides ``metadata``).
        description: Program description (overrides ``metadata``).
        max_execution_time: Seconds a job of the program may run (overrides ``metadata``).
        is_public: Whether other users may see and run the program.
        exist_ok: If a program of yours already has this name, update it instead of failing.
        extra_metadata: More keyword arguments for ``RuntimeService.upload_program``
            (``parameters``, ``return_values``, ``interim_results``, ``backend_requirements``).

    Returns:
        The program id.

    Raises:
        RuntimeDuplicateProgramError: A program with this name exists and ``exist_ok`` is false.
        IBMQNotAuthorizedError: The token may not upload programs.

    Example:
        ```python
        from prefect import flow
        from prefect_qiskit_runtime import QiskitRuntimeCredentials
        from prefect_qiskit_runtime.prefect.tasks import upload_program

        @flow
        def publish():
            creds = QiskitRuntimeCredentials.load("BLOCK_NAME")
            return upload_program(creds, "my_program.py", {"name": "my-program"}, exist_ok=True)
        ```
    """
    return _upload_program(
        credentials,
        data,
        metadata,
        name,
        description,
        max_execution_time,
        is_public,
        exist_ok,
        extra_metadata or {},
    )


@task(name="upload-runtime-program", **_COMMON)
async def aupload_program(
    credentials: CredentialsLike,
    data: str | Path,
    metadata: dict[str, Any] | str | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    max_execution_time: int | None = None,
    is_public: bool = False,
    exist_ok: bool = False,
    extra_metadata: dict[str, Any] | None = None,
) -> str:
    """Async twin of :func:`upload_program`."""
    return await asyncio.to_thread(
        _upload_program,
        credentials,
        data,
        metadata,
        name,
        description,
        max_execution_time,
        is_public,
        exist_ok,
        extra_metadata or {},
    )


@task(name="delete-runtime-program", task_run_name="delete-program-{program_id}", **_COMMON)
def delete_program(
    credentials: CredentialsLike, program_id: str, *, missing_ok: bool = False
) -> None:
    """Delete one of your programs.

    Args:
        credentials: The service holding the program.
        program_id: The program to delete.
        missing_ok: Succeed when the program does not exist (already deleted).

    Raises:
        RuntimeProgramNotFound: No such program and ``missing_ok`` is false.
    """
    _delete_program(credentials, program_id, missing_ok)


@task(name="delete-runtime-program", task_run_name="delete-program-{program_id}", **_COMMON)
async def adelete_program(
    credentials: CredentialsLike, program_id: str, *, missing_ok: bool = False
) -> None:
    """Async twin of :func:`delete_program`."""
    await asyncio.to_thread(_delete_program, credentials, program_id, missing_ok)


@task(name="list-runtime-programs", **_COMMON)
def list_programs(credentials: CredentialsLike, limit: int | None = None) -> list[dict[str, Any]]:
    """List the programs you can run (yours and the public ones).

    Args:
        credentials: The service.
        limit: At most this many; ``None`` lists all.

    Returns:
        One dict per program: ``program_id``, ``name``, ``description``, ``max_execution_time``,
        ``parameters``, ``return_values``, ``interim_results``, ``is_public``...
    """
    return _list_programs(credentials, limit)


@task(name="list-runtime-programs", **_COMMON)
async def alist_programs(
    credentials: CredentialsLike, limit: int | None = None
) -> list[dict[str, Any]]:
    """Async twin of :func:`list_programs`."""
    return await asyncio.to_thread(_list_programs, credentials, limit)
