"""Wire objects shared by the client and the service.

Everything here is plain data: pydantic models of program metadata, the job status vocabulary of
the wire (``spec/runtime-api.md`` §3.3) and its mapping to ``qiskit.providers.JobStatus``, and
the reason codes the service attaches to jobs that did not complete.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from qiskit.providers import JobStatus


class JobState(str, enum.Enum):
    """A runtime job's status exactly as the wire spells it."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CANCELLED_RAN_TOO_LONG = "CANCELLED - RAN TOO LONG"

    @property
    def is_final(self) -> bool:
        """Whether the job can no longer change state."""
        return self in FINAL_STATES

    def to_job_status(self) -> JobStatus:
        """Map to Qiskit's ``JobStatus`` as the original client did.

        Returns:
            ``DONE`` for COMPLETED, ``ERROR`` for FAILED and RAN TOO LONG, otherwise the same name.
        """
        from qiskit.providers import JobStatus

        return {
            JobState.QUEUED: JobStatus.QUEUED,
            JobState.RUNNING: JobStatus.RUNNING,
            JobState.COMPLETED: JobStatus.DONE,
            JobState.FAILED: JobStatus.ERROR,
            JobState.CANCELLED: JobStatus.CANCELLED,
            JobState.CANCELLED_RAN_TOO_LONG: JobStatus.ERROR,
        }[self]

    @classmethod
    def parse(cls, value: str) -> JobState:
        """Parse a status from the wire, accepting any letter case.

        Raises:
            ValueError: If ``value`` is not one of the six statuses.
        """
        return cls(value.upper())


FINAL_STATES = frozenset(
    {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.CANCELLED_RAN_TOO_LONG}
)
PENDING_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})


class ReasonCode(str, enum.Enum):
    """Why a job ended other than ``COMPLETED``; sent as ``reason_code`` in the job object."""

    PROGRAM_ERROR = "PROGRAM_ERROR"
    CANCELLED_BY_USER = "CANCELLED_BY_USER"
    RAN_TOO_LONG = "RAN_TOO_LONG"
    WORKER_LOST = "WORKER_LOST"
    SERVICE_RESTARTED = "SERVICE_RESTARTED"
    MEMORY_LIMIT = "MEMORY_LIMIT"
    INVALID_RESULT = "INVALID_RESULT"

    @property
    def retryable(self) -> bool:
        """Whether running the same job again may succeed (the failure was not the program's)."""
        return self in {ReasonCode.WORKER_LOST, ReasonCode.SERVICE_RESTARTED}


class ProgramSpec(BaseModel):
    """The ``spec`` of a program: JSON Schema documents, stored and returned as given."""

    model_config = ConfigDict(extra="allow")

    backend_requirements: dict[str, Any] | None = None
    parameters: dict[str, Any] | None = None
    return_values: dict[str, Any] | None = None
    interim_results: dict[str, Any] | None = None


class ProgramMetadata(BaseModel):
    """Program metadata in the ``spec`` form of ``spec/runtime-api.md`` §7."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    max_execution_time: int = Field(default=300, gt=0)
    is_public: bool = False
    spec: ProgramSpec = Field(default_factory=ProgramSpec)


@dataclass
class ProgramParameter:
    """One program input, in the flat form of the original documentation.

    Args:
        name: Input name, the keyword passed to ``main``.
        description: What the input means.
        type: A type name such as ``int``, ``str``, ``QuantumCircuit`` or a JSON Schema type.
        required: Whether the job is rejected without it.
    """

    name: str
    description: str = ""
    type: str = "object"
    required: bool = False


@dataclass
class ProgramResult:
    """One program return value or interim result, in the original flat form."""

    name: str
    description: str = ""
    type: str = "object"


_JSON_TYPES = {
    "int": "integer",
    "integer": "integer",
    "float": "number",
    "number": "number",
    "str": "string",
    "string": "string",
    "bool": "boolean",
    "boolean": "boolean",
    "list": "array",
    "array": "array",
    "dict": "object",
    "object": "object",
    "none": "null",
    "null": "null",
}


def flat_to_schema(
    items: list[ProgramParameter] | list[ProgramResult] | list[dict[str, Any]],
) -> dict[str, Any]:
    """Turn the original flat parameter list into the JSON Schema object the wire expects.

    Types that JSON Schema cannot name (``QuantumCircuit``, ``ndarray``) are left unconstrained and
    keep their name in ``description``.

    Args:
        items: ``ProgramParameter``/``ProgramResult`` objects or dicts with the same keys.

    Returns:
        ``{"type": "object", "properties": {...}, "required": [...]}``.

    Example:
        >>> flat_to_schema([ProgramParameter("iterations", "how many", "int", True)])["required"]
        ['iterations']
    """
    properties: dict[str, Any] = {}
    required: list[str] = []
    for item in items:
        d = item if isinstance(item, dict) else vars(item)
        prop: dict[str, Any] = {"description": d.get("description", "")}
        json_type = _JSON_TYPES.get(str(d.get("type", "")).lower())
        if json_type:
            prop["type"] = json_type
        else:
            prop["title"] = str(d.get("type", ""))
        properties[d["name"]] = prop
        if d.get("required"):
            required.append(d["name"])
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


__all__ = [
    "FINAL_STATES",
    "PENDING_STATES",
    "JobState",
    "ProgramMetadata",
    "ProgramParameter",
    "ProgramResult",
    "ProgramSpec",
    "ReasonCode",
    "flat_to_schema",
]
