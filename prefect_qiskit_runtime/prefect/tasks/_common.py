"""What every task shares: its Prefect options and how it reaches the service."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect.cache_policies import NO_CACHE

from prefect_qiskit_runtime.prefect import _utils as pu
from prefect_qiskit_runtime.prefect.blocks import QiskitRuntimeBackend, QiskitRuntimeCredentials

if TYPE_CHECKING:
    from prefect_qiskit_runtime.client import RuntimeService

# Options shared by every task: no caching and no result persistence (a job submit is not idempotent
# from Prefect's point of view, and results may be large), retries only for retryable failures.
_COMMON: dict[str, Any] = {
    "cache_policy": NO_CACHE,
    "persist_result": False,
    "retries": 2,
    "retry_delay_seconds": [2, 10],
    "retry_jitter_factor": 0.2,
    "retry_condition_fn": pu.is_retryable_failure,
}

CredentialsLike = QiskitRuntimeCredentials | QiskitRuntimeBackend


def _service(block: CredentialsLike) -> RuntimeService:
    return block.get_client()


def _attempts(block: CredentialsLike) -> int:
    return block.job_attempts if isinstance(block, QiskitRuntimeBackend) else 3
