"""Request and response bodies of the service API (they also document it in /openapi.json).

The routes parse requests into these models and the use cases take them as their inputs, so both
layers share one definition of each body.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Longest execution-time limit a program or a job may ask for: a week, in seconds.
_MAX_SECONDS = 7 * 24 * 3600
#: Most tags one job may carry.
MAX_TAGS = 50


class _Body(BaseModel):
    """A request body: unknown fields ignored, no NUL character in any text field.

    PostgreSQL text cannot hold NUL: a name with one would fail deep in the store (a 500) instead
    of being refused as the bad input it is.
    """

    model_config = ConfigDict(extra="ignore")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(text, str) and "\x00" in text for text in texts):
            raise ValueError("must not contain NUL characters")
        return value


class ProgramCreate(_Body):
    """Body of ``POST /runtime/programs`` in its JSON form."""

    name: str = Field(min_length=1, max_length=200)
    data: str = Field(min_length=1, description="Standard base64 of the program's UTF-8 source.")
    cost: int | None = Field(default=None, gt=0, le=_MAX_SECONDS)
    max_execution_time: int | None = Field(default=None, gt=0, le=_MAX_SECONDS)
    description: str = Field(default="", max_length=100_000)
    is_public: bool = False
    spec: dict[str, Any] | None = None


class ProgramUpdate(_Body):
    """Body of ``PATCH /runtime/programs/{id}``: only the given fields change."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=100_000)
    cost: int | None = Field(default=None, gt=0, le=_MAX_SECONDS)
    max_execution_time: int | None = Field(default=None, gt=0, le=_MAX_SECONDS)
    spec: dict[str, Any] | None = None


class JobCreate(_Body):
    """Body of ``POST /runtime/jobs`` (``spec/runtime-api.md`` §3.4)."""

    program_id: str = Field(min_length=1, max_length=100)
    backend: str = Field(min_length=1, max_length=200)
    hub: str | None = Field(default=None, max_length=100)
    group: str | None = Field(default=None, max_length=100)
    project: str | None = Field(default=None, max_length=100)
    params: Any = None
    runtime: str | None = Field(default=None, max_length=200)
    log_level: str | None = Field(default=None, max_length=20)
    #: Extension: this job's own execution-time limit in seconds, replacing the program's ``cost``.
    max_execution_time: int | None = Field(default=None, gt=0, le=_MAX_SECONDS)


class ModernJobCreate(_Body):
    """Body of ``POST /api/v1/jobs``: a primitive job as ``qiskit-ibm-runtime`` sends it."""

    program_id: str = Field(min_length=1, max_length=100)
    backend: str | None = Field(default=None, min_length=1, max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)
    runtime: str | None = Field(default=None, max_length=200)
    log_level: str | None = Field(default=None, max_length=20)
    session_id: str | None = Field(default=None, min_length=1, max_length=64)
    tags: list[str] | None = Field(default=None, max_length=MAX_TAGS)
    #: The client's ``max_execution_time``, in seconds.
    cost: int | None = Field(default=None, gt=0, le=_MAX_SECONDS)
    private: bool | None = None
    calibration_id: str | None = Field(default=None, max_length=200)


class SessionCreate(_Body):
    """Body of ``POST /api/v1/sessions``: a session (``dedicated``) or a batch."""

    mode: str = Field(default="dedicated", max_length=20)
    backend: str = Field(min_length=1, max_length=200)
    instance: str | None = Field(default=None, max_length=500)
    max_ttl: int | None = Field(default=None, gt=0, le=_MAX_SECONDS)


class SessionUpdate(_Body):
    """Body of ``PATCH /api/v1/sessions/{id}``."""

    accepting_jobs: bool


class TagsUpdate(_Body):
    """Body of ``PUT /api/v1/jobs/{id}/tags``."""

    tags: list[str] = Field(max_length=MAX_TAGS)


class IdResponse(BaseModel):
    """The id of a created object."""

    id: str


__all__ = [
    "MAX_TAGS",
    "IdResponse",
    "JobCreate",
    "ModernJobCreate",
    "ProgramCreate",
    "ProgramUpdate",
    "SessionCreate",
    "SessionUpdate",
    "TagsUpdate",
]
