"""The runtime client: the ``IBMRuntimeService`` surface of the original API, for our service.

Usable without Prefect (a plain script, a notebook). With no URL, ``RuntimeService()`` starts or
reuses this user's embedded service.

Example:
    >>> from prefect_qiskit_runtime.client import RuntimeService
    >>> service = RuntimeService()  # doctest: +SKIP
    >>> service.run("hello-world", {"backend_name": "aer_simulator"}, {"iterations": 3}).result()
    ... # doctest: +SKIP
    'All done!'
"""

from __future__ import annotations

from prefect_qiskit_runtime.client.job import RuntimeJob
from prefect_qiskit_runtime.client.program import ParameterNamespace, RuntimeProgram
from prefect_qiskit_runtime.client.service import RuntimeService
from prefect_qiskit_runtime.client.transport import RetryPolicy

__all__ = ["ParameterNamespace", "RetryPolicy", "RuntimeJob", "RuntimeProgram", "RuntimeService"]
