"""Prefect blocks: where a runtime service is and how jobs run on it.

Three blocks, saved once and loaded by name in any flow:

- :class:`QiskitRuntimeCredentials` says *where*: the service URL (empty for the embedded service
  on this machine), the API token and the hub/group/project. ``get_client()`` hands back a
  :class:`~prefect_qiskit_runtime.client.RuntimeService`, cached per block and per thread.
- :class:`~prefect_qiskit_runtime.prefect.platform.QiskitRuntimePlatformCredentials` says where a
  Qiskit Runtime endpoint of the modern API is (IBM Quantum Platform, or this package's service):
  a backend block holding it sends primitive jobs through ``qiskit-ibm-runtime``.
- :class:`QiskitRuntimeBackend` says *how*: which backend, default inputs and run options, a
  ``max_execution_time`` override, and the retry policy of the tasks that run jobs.

Building, saving or loading any block never touches the network: the first request happens when a
task (or your code) asks the client for something.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from prefect.blocks.abstract import CredentialsBlock
from prefect.blocks.core import Block
from pydantic import Field, PrivateAttr, SecretStr, field_validator

from prefect_qiskit_runtime.prefect._blockutils import _DOCS, _LOGO, _ClientCache
from prefect_qiskit_runtime.prefect.platform import QiskitRuntimePlatformCredentials

if TYPE_CHECKING:
    from prefect_qiskit_runtime.client import RuntimeService

__all__ = ["QiskitRuntimeBackend", "QiskitRuntimeCredentials", "QiskitRuntimePlatformCredentials"]


class QiskitRuntimeCredentials(CredentialsBlock):
    """Where the Qiskit Runtime service is and who you are on it.

    Leave ``url`` empty to use the embedded service: the client finds (or starts) a service for your
    user on this machine, with its own token, so nothing else needs configuring. Set ``url`` and
    ``token`` to use a shared service. Building or loading the block makes no network call;
    ``get_client()`` returns a client cached per block and thread.

    Example:
        Load stored credentials and list the programs of the service:

        ```python
        from prefect_qiskit_runtime import QiskitRuntimeCredentials

        credentials = QiskitRuntimeCredentials.load("BLOCK_NAME")
        service = credentials.get_client()
        service.pprint_programs()
        ```
    """

    _block_type_name: ClassVar[str] = "Qiskit Runtime Credentials"
    _block_type_slug: ClassVar[str] = "qiskit-runtime-credentials"
    _logo_url: ClassVar[Any] = _LOGO
    _documentation_url: ClassVar[Any] = f"{_DOCS}/concepts/blocks/"

    url: str | None = Field(
        default=None,
        title="Service URL",
        description=(
            "Root URL of the runtime service, such as https://runtime.example.org:8443. "
            "Leave empty to use the embedded service on this machine."
        ),
    )
    token: SecretStr | None = Field(
        default=None,
        title="API Token",
        description=(
            "API token issued by the service (prefect-qiskit-runtime users add). "
            "Not needed with the embedded service."
        ),
    )
    hub: str | None = Field(
        default=None,
        description="Hub to run jobs under; empty means the account's default.",
    )
    group: str | None = Field(
        default=None,
        description="Group to run jobs under; empty means the account's default.",
    )
    project: str | None = Field(
        default=None,
        description="Project to run jobs under; empty means the account's default.",
    )
    verify_tls: bool = Field(
        default=True,
        title="Verify TLS",
        description="Check the service's TLS certificate; turn off only for testing.",
    )
    ca_bundle: str | None = Field(
        default=None,
        title="CA Bundle",
        description=(
            "Path to a CA bundle that signs the service's certificate, for a service with a "
            "self-signed certificate (its <home>/tls/cert.pem)."
        ),
    )
    request_timeout: float = Field(
        default=30.0,
        gt=0,
        title="Request Timeout",
        description="Seconds to wait for one HTTP answer before the client retries.",
    )

    _clients: _ClientCache = PrivateAttr(default_factory=_ClientCache)

    @field_validator("url", "hub", "group", "project", "ca_bundle", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        # The UI sends "" for a cleared text field; "" must mean "not set", not "a URL named ''".
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    def _fingerprint(self) -> str:
        token = self.token.get_secret_value() if self.token else ""
        parts = [
            self.url or "",
            token,
            self.hub or "",
            self.group or "",
            self.project or "",
            str(self.verify_tls),
            self.ca_bundle or "",
            repr(self.request_timeout),
        ]
        # Hashed so the token never sits in a dict key someone might log.
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()

    def get_client(self) -> RuntimeService:
        """Return a runtime client for these credentials, cached per block and thread.

        The first call in a thread builds the client; with no URL this is where the embedded service
        is found or started. Later calls in the same thread return the same client until a field of
        the block changes.

        Returns:
            A ``RuntimeService`` bound to the service, token and hub/group/project of the block.

        Raises:
            EmbeddedServiceError: If no URL is set and the embedded service cannot be started.

        Example:
            ```python
            from prefect_qiskit_runtime import QiskitRuntimeCredentials

            service = QiskitRuntimeCredentials().get_client()  # the embedded service
            job = service.run("hello-world", {"backend_name": "aer_simulator"}, {"iterations": 2})
            print(job.result())
            ```
        """
        key = self._fingerprint()
        client = self._clients.get(key)
        if client is None:
            from prefect_qiskit_runtime.client import RuntimeService

            verify: bool | str = self.ca_bundle if self.ca_bundle else self.verify_tls
            client = RuntimeService(
                url=self.url,
                token=self.token.get_secret_value() if self.token else None,
                hub=self.hub,
                group=self.group,
                project=self.project,
                verify=verify,
                timeout=self.request_timeout,
            )
            self._clients.put(key, client)
        return client


class QiskitRuntimeBackend(Block):
    """How jobs run: backend, default inputs and options, and the retry policy of job tasks.

    Tasks that submit jobs (``run_program``, ``run_and_await``) take this block. Its
    ``default_inputs`` are merged under the inputs of each call, ``options`` under its run options.
    The retry policy applies to failures marked retryable only (a lost worker, a service that stayed
    unreachable); a program's own exception never retries. Pass ``**backend.task_options()`` to
    ``with_options`` to apply the delay and timeout of the block to a task.

    Example:
        Load a backend block and run a program on it:

        ```python
        from prefect import flow
        from prefect_qiskit_runtime import QiskitRuntimeBackend
        from prefect_qiskit_runtime.prefect.tasks import run_and_await

        @flow
        def hello():
            backend = QiskitRuntimeBackend.load("BLOCK_NAME")
            return run_and_await.with_options(**backend.task_options())(
                backend, "hello-world", {"iterations": 3}
            )
        ```
    """

    _block_type_name: ClassVar[str] = "Qiskit Runtime Backend"
    _block_type_slug: ClassVar[str] = "qiskit-runtime-backend"
    _logo_url: ClassVar[Any] = _LOGO
    _documentation_url: ClassVar[Any] = f"{_DOCS}/concepts/blocks/"

    credentials: QiskitRuntimeCredentials | QiskitRuntimePlatformCredentials = Field(
        default_factory=QiskitRuntimeCredentials,
        description=(
            "Credentials of the service the jobs run on: a runtime service of this package, or "
            "a Qiskit Runtime endpoint (IBM Quantum Platform) reached through qiskit-ibm-runtime."
        ),
    )
    backend_name: str = Field(
        default="aer_simulator",
        title="Backend Name",
        description="Backend the jobs run on, such as aer_simulator or a noisy fake device.",
    )
    default_inputs: dict[str, Any] = Field(
        default_factory=dict,
        title="Default Inputs",
        description="Program inputs used when a call does not give them (call inputs win).",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        title="Run Options",
        description="Extra run options sent with every job, such as log_level or image.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] | None = Field(
        default=None,
        title="Log Level",
        description="Level of the program's logging captured in the job logs; empty keeps WARNING.",
    )
    max_execution_time: int | None = Field(
        default=None,
        gt=0,
        title="Max Execution Time",
        description=(
            "Seconds a job may run before the task waiting for it cancels it; empty keeps only "
            "the program's own limit."
        ),
    )
    job_attempts: int = Field(
        default=3,
        ge=1,
        le=20,
        title="Job Attempts",
        description="How many times a job task may run when its failure is marked retryable.",
    )
    retry_delay_seconds: float = Field(
        default=10.0,
        ge=0,
        title="Retry Delay",
        description="Seconds between two attempts of a job task.",
    )
    task_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        title="Task Timeout",
        description=(
            "Seconds a job task may take before it fails; its runtime job is then cancelled. "
            "Empty means no limit."
        ),
    )

    @property
    def is_platform(self) -> bool:
        """Whether jobs go through ``qiskit-ibm-runtime`` (platform credentials)."""
        return isinstance(self.credentials, QiskitRuntimePlatformCredentials)

    def get_client(self) -> RuntimeService:
        """Return the runtime client of the block's credentials (cached per block and thread).

        Returns:
            The ``RuntimeService`` of ``self.credentials``.

        Raises:
            TypeError: The credentials are platform credentials, whose jobs are primitive jobs
                of ``run_sampler``/``run_estimator`` (use ``get_platform_client``).
        """
        if isinstance(self.credentials, QiskitRuntimePlatformCredentials):
            raise TypeError(
                "This backend block has IBM Quantum Platform credentials: run primitive jobs "
                "with run_sampler/run_estimator, or use get_platform_client()."
            )
        return self.credentials.get_client()

    def get_platform_client(self) -> Any:
        """Return the ``qiskit_ibm_runtime.QiskitRuntimeService`` of platform credentials.

        Raises:
            TypeError: The credentials are not :class:`QiskitRuntimePlatformCredentials`.
            MissingExtraError: ``qiskit-ibm-runtime`` is not installed.
        """
        if not isinstance(self.credentials, QiskitRuntimePlatformCredentials):
            raise TypeError(
                "Primitive jobs through qiskit-ibm-runtime need QiskitRuntimePlatformCredentials "
                "in the backend block's credentials."
            )
        return self.credentials.get_client()

    def run_options(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Build the run options of one job: the block's options, then ``overrides``.

        Args:
            overrides: Options of this call; they win over the block's.

        Returns:
            A new dict with at least ``backend_name``.
        """
        merged: dict[str, Any] = {"backend_name": self.backend_name}
        if self.log_level:
            merged["log_level"] = self.log_level
        if self.max_execution_time:
            merged["max_execution_time"] = self.max_execution_time
        merged.update(self.options)
        merged.update(overrides or {})
        return merged

    def merge_inputs(self, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
        """Build the inputs of one job: the block's defaults, then ``inputs``.

        Args:
            inputs: Inputs of this call; they win over the defaults.

        Returns:
            A new dict.
        """
        merged = dict(self.default_inputs)
        merged.update(inputs or {})
        return merged

    def task_options(self) -> dict[str, Any]:
        """Prefect task options that carry the block's retry policy.

        Returns:
            ``retries``, ``retry_delay_seconds`` and ``timeout_seconds``, ready for
            ``task.with_options(**backend.task_options())``.
        """
        return {
            "retries": self.job_attempts - 1,
            "retry_delay_seconds": self.retry_delay_seconds,
            "timeout_seconds": self.task_timeout_seconds,
        }
