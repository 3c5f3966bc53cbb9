"""Small readers of the job wire format shared by the client's job and service objects."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from dateutil import parser as dateparser

from prefect_qiskit_runtime.core.models import JobState

#: Header of the results answer naming the job's status (a wire extension of this service).
JOB_STATUS_HEADER = "X-Job-Status"


def parse_time(value: Any) -> datetime | None:
    """Parse an ISO-8601 time from the wire into an aware UTC ``datetime`` (or ``None``)."""
    if not value:
        return None
    parsed = value if isinstance(value, datetime) else dateparser.isoparse(str(value))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def decode_params(params: Any) -> dict[str, Any]:
    """Decode a job's ``params`` (an object, a JSON string or a one-element list) into inputs."""
    from prefect_qiskit_runtime.core.codec import RuntimeDecoder

    if params is None:
        return {}
    if isinstance(params, list) and len(params) == 1:
        params = params[0]
    text = params if isinstance(params, str) else json.dumps(params)
    decoded = json.loads(text, cls=RuntimeDecoder)
    return decoded if isinstance(decoded, dict) else {"params": decoded}


def response_text(response: Any) -> str:
    """The body as text: the service writes UTF-8, even where a text/* answer lacks a charset."""
    return bytes(response.content or b"").decode("utf-8", errors="replace")


def is_final_object(obj: dict[str, Any]) -> bool:
    """Whether ``obj`` is a job object in a final state."""
    try:
        return bool(obj) and JobState.parse(str(obj.get("status", ""))).is_final
    except ValueError:
        return False


def fmt_seconds(seconds: float) -> str:
    """Seconds as the shortest decimal text for a ``wait`` query parameter (``"1.5"``, ``"0"``)."""
    text = f"{max(0.0, seconds):.3f}".rstrip("0").rstrip(".")
    return text or "0"


def job_timings(obj: dict[str, Any]) -> dict[str, Any]:
    """The timestamps and durations of a job object.

    Args:
        obj: A job object from the service.

    Returns:
        ``created``, ``started``, ``finished`` (aware UTC datetimes or ``None``),
        ``queue_seconds``, ``run_seconds``, ``total_seconds`` (``None`` where an end is missing),
        ``message_count`` and ``reason_code``.
    """
    created = parse_time(obj.get("created"))
    started = parse_time(obj.get("started"))
    finished = parse_time(obj.get("ended"))

    def span(a: datetime | None, b: datetime | None) -> float | None:
        return None if a is None or b is None else max(0.0, (b - a).total_seconds())

    return {
        "created": created,
        "started": started,
        "finished": finished,
        "queue_seconds": span(created, started),
        "run_seconds": span(started, finished),
        "total_seconds": span(created, finished),
        "message_count": obj.get("message_count"),
        "reason_code": obj.get("reason_code"),
    }
