"""The built-in public programs, one ``<id>.py`` (source) and ``<id>.json`` (metadata) each.

The service installs them at start-up from :func:`builtin_programs`. Reading them does not import
Qiskit; their sources run only inside job processes.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

__all__ = ["PROGRAM_IDS", "builtin_programs"]

#: The built-in programs, in the order the service lists them.
PROGRAM_IDS = ("hello-world", "circuit-runner", "sampler", "estimator", "vqe", "qaoa")


def builtin_programs() -> list[tuple[str, str, dict[str, Any]]]:
    """Return ``(id, source, metadata)`` of every built-in program.

    The metadata has the spec form (``name``, ``description``, ``max_execution_time``,
    ``is_public``, ``spec`` with JSON Schema ``parameters``, ``return_values``, ``interim_results``
    and ``backend_requirements``).

    Example:
        >>> [p[0] for p in builtin_programs()][:2]
        ['hello-world', 'circuit-runner']
    """
    root = resources.files(__name__)
    programs = []
    for program_id in PROGRAM_IDS:
        source = root.joinpath(f"{program_id}.py").read_text(encoding="utf-8")
        metadata = json.loads(root.joinpath(f"{program_id}.json").read_text(encoding="utf-8"))
        programs.append((program_id, source, metadata))
    return programs
