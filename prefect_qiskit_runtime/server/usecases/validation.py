"""Checks of what a caller sends: program sources and specs, job inputs, backends, accounts, keys.

Each check either returns the value in the form the store keeps or raises
:class:`~prefect_qiskit_runtime.server.usecases.errors.InvalidArgument` (or
:class:`~prefect_qiskit_runtime.server.usecases.errors.PermissionDenied`) with the error code the
API documents in ``docs/internals.md``. No input, however malformed, may escape as another
exception: that would be a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from prefect_qiskit_runtime.server.store import DEFAULT_GROUP, DEFAULT_HUB, DEFAULT_PROJECT
from prefect_qiskit_runtime.server.usecases.errors import InvalidArgument, PermissionDenied

logger = logging.getLogger("prefect_qiskit_runtime.server")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Keys a ``ParameterNamespace`` of the old client adds beside the declared inputs.
NAMESPACE_KEYS = ("_ParameterNamespace__metadata", "_ParameterNamespace__program_params")
#: Longest ``Idempotency-Key`` accepted.
MAX_IDEMPOTENCY_KEY = 200


def decode_source(data: str | bytes) -> str:
    """The program source carried as standard base64 text.

    Args:
        data: The base64 text, or a request body holding it (surrounding whitespace is ignored).

    Returns:
        The source.

    Raises:
        InvalidArgument: ``INVALID_PROGRAM`` if ``data`` is not base64 of non-empty UTF-8 text.
    """
    try:
        text = data.decode("ascii") if isinstance(data, bytes) else data
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise InvalidArgument("INVALID_PROGRAM", "Program data must be standard base64.") from None
    return source_text(raw)


def source_text(raw: bytes) -> str:
    """The program source from its raw bytes.

    Args:
        raw: The uploaded bytes.

    Returns:
        The source text.

    Raises:
        InvalidArgument: ``INVALID_PROGRAM`` if the bytes are not UTF-8, hold a NUL character or
            are blank.
    """
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument("INVALID_PROGRAM", "Program source must be UTF-8 text.") from None
    if "\x00" in source:
        raise InvalidArgument("INVALID_PROGRAM", "Program source must not contain NUL characters.")
    if not source.strip():
        raise InvalidArgument("INVALID_PROGRAM", "Program source is empty.")
    return source


def check_spec(spec: Any) -> str:
    """Validate a program ``spec`` and return it as JSON text.

    Args:
        spec: The spec as sent, or ``None`` for none.

    Returns:
        The JSON text to store (``"{}"`` for no spec).

    Raises:
        InvalidArgument: ``INVALID_METADATA`` if the spec is not an object, one of its schemas is
            not a JSON Schema, ``backend_requirements`` is malformed or a number is not finite.
    """
    if spec is None:
        return "{}"
    if not isinstance(spec, dict):
        raise InvalidArgument("INVALID_METADATA", "spec must be a JSON object.")
    for key in ("parameters", "return_values", "interim_results"):
        schema = spec.get(key)
        if schema is None:
            continue
        if not isinstance(schema, dict):
            raise InvalidArgument("INVALID_METADATA", f"spec.{key} must be a JSON Schema object.")
        _check_schema(schema, f"spec.{key}")
    requirements = spec.get("backend_requirements")
    if requirements is not None:
        if not isinstance(requirements, dict):
            raise InvalidArgument(
                "INVALID_METADATA", "spec.backend_requirements must be an object."
            )
        min_qubits = requirements.get("min_num_qubits")
        if min_qubits is not None and (
            isinstance(min_qubits, bool) or not isinstance(min_qubits, int) or min_qubits < 0
        ):
            raise InvalidArgument(
                "INVALID_METADATA",
                "spec.backend_requirements.min_num_qubits must be a non-negative integer.",
            )
    try:
        return json.dumps(spec, allow_nan=False)
    except ValueError:
        raise InvalidArgument(
            "INVALID_METADATA", "spec must not contain NaN or Infinity."
        ) from None


def _check_schema(schema: dict[str, Any], where: str) -> None:
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidArgument(
            "INVALID_METADATA", f"{where} is not a valid JSON Schema: {exc.message}"
        ) from None
    except Exception as exc:  # a hostile schema must not take the request down
        raise InvalidArgument(
            "INVALID_METADATA", f"{where} is not a valid JSON Schema: {exc}"
        ) from None


def normalise_params(params: Any) -> dict[str, Any]:
    """The job inputs as an object, from any form the old client may send.

    Args:
        params: An object, its JSON text, a one-element list of it, or ``None``.

    Returns:
        The inputs (``{}`` for ``None``).

    Raises:
        InvalidArgument: ``INVALID_INPUT`` if no object can be made of ``params``.
    """
    if params is None:
        return {}
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except (ValueError, RecursionError):
            raise InvalidArgument("INVALID_INPUT", "params must be a JSON object.") from None
    if isinstance(params, list) and len(params) == 1:
        params = params[0]
    if not isinstance(params, dict):
        raise InvalidArgument("INVALID_INPUT", "params must be a JSON object.")
    return params


def validate_inputs(params: dict[str, Any], spec: dict[str, Any]) -> None:
    """Check job inputs against the program's ``spec.parameters`` JSON Schema, if it has one.

    Args:
        params: The normalised inputs.
        spec: The program's spec.

    Raises:
        InvalidArgument: ``INVALID_INPUT`` naming the first offending input.
    """
    schema = spec.get("parameters")
    if not isinstance(schema, dict) or not schema:
        return
    import jsonschema

    inputs = dict(params)
    if any(key in inputs for key in NAMESPACE_KEYS):
        # A ParameterNamespace sends every declared input, unset ones as null.
        inputs = {k: v for k, v in inputs.items() if k not in NAMESPACE_KEYS and v is not None}
    try:
        validator_cls = jsonschema.validators.validator_for(schema)
        validator = validator_cls(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(inputs))
    except Exception as exc:  # a broken stored schema: do not block every job of the program
        logger.warning("cannot validate inputs against the program's schema: %s", exc)
        return
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)[:200]
        prefix = f"Invalid input {where!r}: " if where else "Invalid inputs: "
        message = error.message
        if len(message) > 500:  # jsonschema quotes the offending value, which may be huge
            message = message[:500] + " …"
        raise InvalidArgument("INVALID_INPUT", prefix + message)


def backend_catalogue() -> Any:
    """The backends module, or ``None`` where it cannot be imported (then every name passes).

    Returns:
        :mod:`prefect_qiskit_runtime.server.backends` or ``None``.
    """
    try:
        from prefect_qiskit_runtime.server import backends
    except ImportError:
        return None
    return backends


def check_backend(name: str, spec: dict[str, Any]) -> None:
    """Check that a backend exists and meets the program's ``backend_requirements``.

    Args:
        name: The backend a job names.
        spec: The program's spec.

    Raises:
        InvalidArgument: ``INVALID_BACKEND`` for an unknown name, ``BACKEND_REQUIREMENTS`` for a
            backend with fewer qubits than ``min_num_qubits``.
    """
    backends = backend_catalogue()
    if backends is None:
        return
    known = list(backends.names())
    if name not in known:
        raise InvalidArgument(
            "INVALID_BACKEND",
            f"Unknown backend {name!r}. Available backends: {', '.join(sorted(known))}.",
        )
    requirements = spec.get("backend_requirements")
    if isinstance(requirements, dict):
        min_qubits = requirements.get("min_num_qubits")
        if isinstance(min_qubits, int) and not isinstance(min_qubits, bool):
            try:
                have = backends.num_qubits(name)
            except KeyError:
                have = None
            if have is not None and have < min_qubits:
                raise InvalidArgument(
                    "BACKEND_REQUIREMENTS",
                    f"Backend {name!r} has {have} qubits; the program needs at least {min_qubits}.",
                )


def check_account(hub: str | None, group: str | None, project: str | None) -> tuple[str, str, str]:
    """The hub/group/project a job runs under; unset parts take the defaults.

    Args:
        hub: Hub asked for, or ``None``.
        group: Group asked for, or ``None``.
        project: Project asked for, or ``None``.

    Returns:
        ``(hub, group, project)``.

    Raises:
        PermissionDenied: For anything but the one hub/group/project every account has.
    """
    chosen = (hub or DEFAULT_HUB, group or DEFAULT_GROUP, project or DEFAULT_PROJECT)
    if chosen != (DEFAULT_HUB, DEFAULT_GROUP, DEFAULT_PROJECT):
        raise PermissionDenied(
            f"Hub/group/project {'/'.join(chosen)} is not available to this account."
        )
    return chosen


def check_log_level(level: str | None) -> str | None:
    """The program's logging level in upper case.

    Args:
        level: Level name in any case, or ``None``.

    Returns:
        One of :data:`LOG_LEVELS`, or ``None``.

    Raises:
        InvalidArgument: ``INVALID_REQUEST`` for another name.
    """
    if level is None:
        return None
    upper = level.upper()
    if upper not in LOG_LEVELS:
        raise InvalidArgument(
            "INVALID_REQUEST",
            f"Invalid log_level {level!r}; use one of {', '.join(LOG_LEVELS)}.",
        )
    return upper


def check_idempotency_key(key: str | None) -> str | None:
    """The ``Idempotency-Key`` header without surrounding whitespace.

    Args:
        key: The header, or ``None``.

    Returns:
        The key, or ``None`` when none was sent.

    Raises:
        InvalidArgument: ``INVALID_REQUEST`` for a blank key or one over 200 characters.
    """
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidArgument("INVALID_REQUEST", "Idempotency-Key must be 1 to 200 characters.")
    return key


__all__ = [
    "LOG_LEVELS",
    "NAMESPACE_KEYS",
    "backend_catalogue",
    "check_account",
    "check_backend",
    "check_idempotency_key",
    "check_log_level",
    "check_spec",
    "decode_source",
    "normalise_params",
    "source_text",
    "validate_inputs",
]
