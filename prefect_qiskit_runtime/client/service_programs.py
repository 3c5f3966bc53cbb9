"""The program half of :class:`~prefect_qiskit_runtime.client.service.RuntimeService`.

Listing, fetching, uploading, updating, deleting programs and changing their visibility, and the
reading of program metadata in the forms the original documentation allows (a dict or a JSON file;
flat ``parameters`` lists of ``ProgramParameter``-like items, or JSON Schema under ``spec``).
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect_qiskit_runtime.client.program import RuntimeProgram
from prefect_qiskit_runtime.client.transport import Transport, new_idempotency_key
from prefect_qiskit_runtime.core.exceptions import (
    IBMQInputValueError,
    QiskitRuntimeError,
    RuntimeDuplicateProgramError,
    RuntimeProgramNotFound,
)
from prefect_qiskit_runtime.core.models import flat_to_schema

logger = logging.getLogger(__name__)

_PROGRAM_PAGE = 20
_SPEC_KEYS = ("backend_requirements", "parameters", "return_values", "interim_results")


class ProgramsMixin:
    """Program methods of ``RuntimeService``; the service provides the transport and the cache."""

    _transport: Transport
    _programs: dict[str, RuntimeProgram]
    _programs_listed: bool

    def pprint_programs(
        self, refresh: bool = False, limit: int | None = None, skip: int = 0
    ) -> None:
        """Print the available programs, one block per program.

        Args:
            refresh: Query the service again instead of using the cached list.
            limit: Print at most this many (``None`` for all).
            skip: Skip this many first.
        """
        for program in self.programs(refresh, limit=limit, skip=skip):
            print("=" * 50)
            print(str(program))

    def programs(
        self, refresh: bool = False, limit: int | None = None, skip: int = 0
    ) -> list[RuntimeProgram]:
        """The programs this user can see (their own and public ones), oldest first.

        Args:
            refresh: Query the service again instead of using the cached list.
            limit: Return at most this many (``None`` for all).
            skip: Skip this many first.

        Returns:
            The programs.

        Raises:
            RequestsApiError: If the request failed.
        """
        if refresh or not self._programs_listed:
            listed: dict[str, RuntimeProgram] = {}
            offset = 0
            while True:
                params: dict[str, Any] = {"limit": _PROGRAM_PAGE}
                if offset:
                    params["offset"] = offset
                body = self._transport.request(
                    "GET", "/programs", what="list programs", params=params
                ).json()
                page = body.get("programs", [])
                for obj in page:
                    listed[obj["id"]] = RuntimeProgram.from_wire(obj, self._fetch_program)
                offset += len(page)
                if not page or len(listed) >= int(body.get("count", 0)):
                    break
            self._programs = listed
            self._programs_listed = True
        programs = list(self._programs.values())
        end = None if limit is None else skip + limit
        return programs[skip:end]

    def _fetch_program(self, program_id: str) -> dict[str, Any]:
        response = self._transport.request(
            "GET",
            f"/programs/{program_id}",
            what=f"get program {program_id}",
            errors={404: RuntimeProgramNotFound},
            fallback=QiskitRuntimeError,
        )
        result: dict[str, Any] = response.json()
        return result

    def program(self, program_id: str, refresh: bool = False) -> RuntimeProgram:
        """One program.

        Args:
            program_id: The program's id.
            refresh: Query the service again instead of using a cached copy.

        Returns:
            The program.

        Raises:
            RuntimeProgramNotFound: If the program does not exist or is not visible.
            QiskitRuntimeError: If the request failed.
        """
        if refresh or program_id not in self._programs:
            obj = self._fetch_program(program_id)
            self._programs[program_id] = RuntimeProgram.from_wire(obj, self._fetch_program)
        return self._programs[program_id]

    def upload_program(
        self,
        data: str | bytes | os.PathLike[str],
        metadata: Mapping[str, Any] | str | os.PathLike[str] | None = None,
        name: str | None = None,
        max_execution_time: int | None = None,
        description: str | None = None,
        version: float | None = None,
        backend_requirements: str | Mapping[str, Any] | None = None,
        parameters: Sequence[Any] | Mapping[str, Any] | None = None,
        return_values: Sequence[Any] | Mapping[str, Any] | None = None,
        interim_results: Sequence[Any] | Mapping[str, Any] | None = None,
        is_public: bool | None = False,
        *,
        idempotency_key: str | None = None,
    ) -> str:
        """Upload a program.

        ``name``, ``description`` and ``max_execution_time`` are required, from ``metadata`` or the
        arguments (which take precedence). ``metadata`` may be a dict or a JSON file, in the flat
        form of the original documentation (``parameters`` as a list of
        ``ProgramParameter``-like items) or the ``spec`` form (JSON Schema under ``spec``).

        Args:
            data: The program source, or the path of a file holding it (a string is a path unless
                it contains ``def main(``).
            metadata: A metadata dict or the path of a JSON file.
            name: Program name.
            max_execution_time: Seconds a job may run.
            description: What the program does.
            version: Accepted for compatibility; not stored.
            backend_requirements: Requirements on the backend (dict or JSON text).
            parameters: Inputs: ``ProgramParameter`` list or a JSON Schema.
            return_values: Results: ``ProgramResult`` list or a JSON Schema.
            interim_results: Interim results: ``ProgramResult`` list or a JSON Schema.
            is_public: Whether every user may see and run it.
            idempotency_key: Names this upload; a retry with the same key creates nothing new.
                A fresh key is generated when omitted.

        Returns:
            The new program's id.

        Raises:
            IBMQInputValueError: If required metadata is missing or the data is not readable.
            RuntimeDuplicateProgramError: If a program with the same name exists.
            IBMQNotAuthorizedError: If this user may not upload programs.
            QiskitRuntimeError: If the upload failed otherwise.
        """
        del version  # the original's program version is not part of the wire format
        merged = _merge_metadata(
            metadata,
            name=name,
            description=description,
            max_execution_time=max_execution_time,
            is_public=is_public,
            backend_requirements=backend_requirements,
            parameters=parameters,
            return_values=return_values,
            interim_results=interim_results,
        )
        for required in ("name", "description", "max_execution_time"):
            if not merged.get(required):
                raise IBMQInputValueError(f"{required} is a required metadata field.")
        source = _read_source(data)
        body: dict[str, Any] = {
            "name": merged["name"],
            "data": base64.b64encode(source.encode("utf-8")).decode("ascii"),
            "cost": int(merged["max_execution_time"]),
            "description": merged["description"],
            "is_public": bool(merged.get("is_public") or False),
        }
        if merged.get("spec"):
            body["spec"] = merged["spec"]
        response = self._transport.request(
            "POST",
            "/programs",
            what="create program",
            json_text=json.dumps(body),
            idempotency_key=idempotency_key or new_idempotency_key(),
            errors={409: RuntimeDuplicateProgramError},
            fallback=QiskitRuntimeError,
        )
        program_id: str = response.json()["id"]
        self._programs_listed = False
        return program_id

    def update_program(
        self,
        program_id: str,
        data: str | bytes | os.PathLike[str] | None = None,
        metadata: Mapping[str, Any] | str | os.PathLike[str] | None = None,
        name: str | None = None,
        description: str | None = None,
        max_execution_time: int | None = None,
        spec: Mapping[str, Any] | None = None,
    ) -> None:
        """Replace a program's source and/or edit its metadata.

        Args:
            program_id: The program's id.
            data: New source, or the path of a file holding it.
            metadata: Metadata dict or JSON file (flat or ``spec`` form); ``is_public`` is ignored.
            name: New name.
            description: New description.
            max_execution_time: New maximum execution time in seconds.
            spec: New ``spec`` entries; only the top-level keys given are replaced.

        Raises:
            RuntimeProgramNotFound: If the program does not exist.
            QiskitRuntimeError: If the update failed.
        """
        if (
            data is None
            and metadata is None
            and not any(v is not None for v in (name, description, max_execution_time, spec))
        ):
            logger.warning("None of the 'data' or 'metadata' fields were specified; nothing to do")
            return
        errors: dict[int, type[QiskitRuntimeError]] = {404: RuntimeProgramNotFound}
        if data is not None:
            source = _read_source(data)
            self._transport.request(
                "PUT",
                f"/programs/{program_id}/data",
                what=f"update the data of program {program_id}",
                data=base64.b64encode(source.encode("utf-8")),
                content_type="application/octet-stream",
                errors=errors,
                fallback=QiskitRuntimeError,
            )
        merged = _merge_metadata(
            metadata, name=name, description=description, max_execution_time=max_execution_time
        )
        if spec:
            merged["spec"] = {**merged.get("spec", {}), **_spec_from(dict(spec))}
        patch: dict[str, Any] = {}
        for key in ("name", "description"):
            if merged.get(key) is not None:
                patch[key] = merged[key]
        if merged.get("max_execution_time") is not None:
            patch["cost"] = int(merged["max_execution_time"])
        if merged.get("spec"):
            patch["spec"] = merged["spec"]
        if patch:
            self._transport.request(
                "PATCH",
                f"/programs/{program_id}",
                what=f"update program {program_id}",
                json_text=json.dumps(patch),
                errors=errors,
                fallback=QiskitRuntimeError,
            )
        self._programs.pop(program_id, None)
        self._programs_listed = False

    def delete_program(self, program_id: str) -> None:
        """Delete a program.

        Raises:
            RuntimeProgramNotFound: If the program does not exist.
            QiskitRuntimeError: If the request failed.
        """
        self._transport.request(
            "DELETE",
            f"/programs/{program_id}",
            what=f"delete program {program_id}",
            errors={404: RuntimeProgramNotFound},
            fallback=QiskitRuntimeError,
        )
        self._programs.pop(program_id, None)

    def set_program_visibility(self, program_id: str, public: bool) -> None:
        """Make a program public (visible and runnable by everyone) or private.

        Raises:
            RuntimeProgramNotFound: If the program does not exist.
            QiskitRuntimeError: If the request failed.
        """
        self._transport.request(
            "PUT",
            f"/programs/{program_id}/{'public' if public else 'private'}",
            what=f"set the visibility of program {program_id}",
            errors={404: RuntimeProgramNotFound},
            fallback=QiskitRuntimeError,
        )
        cached = self._programs.get(program_id)
        if cached is not None:
            cached._is_public = bool(public)


def _read_source(data: str | bytes | os.PathLike[str]) -> str:
    """The program source: bytes are source, a string is a path unless it holds ``def main(``."""
    if isinstance(data, bytes):
        return data.decode("utf-8")
    if isinstance(data, str) and "def main(" in data:
        return data
    path = Path(data)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise IBMQInputValueError(
            f"Program data is neither source with 'def main(' nor a readable file: {path}"
        ) from exc


def _as_schema(value: Any) -> dict[str, Any]:
    """A ``spec`` entry from its flat list form, the oldest ``{"doc": [...]}`` form or a schema."""
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, Mapping):
        if isinstance(value.get("doc"), list):
            return flat_to_schema([_item_dict(v) for v in value["doc"]])
        return dict(value)
    return flat_to_schema([_item_dict(v) for v in value])


def _item_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    if hasattr(item, "_asdict"):  # the original NamedTuple ProgramParameter / ProgramResult
        return dict(item._asdict())
    return dict(vars(item))


def _spec_from(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: (_as_schema(v) if k in _SPEC_KEYS and v is not None else v) for k, v in spec.items()}


def _merge_metadata(
    metadata: Mapping[str, Any] | str | os.PathLike[str] | None, **overrides: Any
) -> dict[str, Any]:
    """Merge a metadata dict or JSON file with explicit arguments (which win).

    Flat keys (``parameters``, ``return_values``... at the top level) and the ``spec`` form are
    both understood; the result holds ``name``, ``description``, ``max_execution_time``,
    ``is_public`` and ``spec``.
    """
    loaded: dict[str, Any] = {}
    if metadata is not None:
        if isinstance(metadata, Mapping):
            loaded = copy.deepcopy(dict(metadata))
        else:
            try:
                loaded = json.loads(Path(metadata).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise IBMQInputValueError(
                    f"Cannot read program metadata {metadata}: {exc}"
                ) from exc
    for key, value in overrides.items():
        if value is not None:
            loaded[key] = value
    spec = _spec_from(dict(loaded.get("spec") or {}))
    for key in _SPEC_KEYS:
        if loaded.get(key) is not None:
            spec[key] = _as_schema(loaded[key])
    merged = {k: loaded.get(k) for k in ("name", "description", "max_execution_time", "is_public")}
    if spec:
        merged["spec"] = spec
    return merged
