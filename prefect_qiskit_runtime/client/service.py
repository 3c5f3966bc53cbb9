"""``RuntimeService``: the ``IBMRuntimeService`` surface of the original documentation.

With no URL it talks to the embedded service of this user (started on demand, see
:mod:`prefect_qiskit_runtime.client.embedded`); with a URL it talks to a shared service.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from prefect_qiskit_runtime.client.channel import JobChannel
from prefect_qiskit_runtime.client.job import RuntimeJob
from prefect_qiskit_runtime.client.program import ParameterNamespace, RuntimeProgram
from prefect_qiskit_runtime.client.service_programs import ProgramsMixin
from prefect_qiskit_runtime.client.stream import Callback
from prefect_qiskit_runtime.client.transport import (
    DEFAULT_TIMEOUT,
    RetryPolicy,
    Timeout,
    Transport,
    Verify,
    new_idempotency_key,
)
from prefect_qiskit_runtime.core.exceptions import (
    IBMQInputValueError,
    QiskitRuntimeError,
    RuntimeJobNotFound,
    RuntimePayloadError,
    RuntimeProgramNotFound,
)

logger = logging.getLogger(__name__)

#: Environment variable read for the token when a URL is given without one.
TOKEN_ENV = "PREFECT_QISKIT_RUNTIME_TOKEN"
#: Environment variable naming a shared service when no URL is given (unset: the embedded one).
URL_ENV = "PREFECT_QISKIT_RUNTIME_URL"
_JOB_PAGE = 50


class RuntimeService(ProgramsMixin):
    """Upload, run and manage Qiskit Runtime programs on a runtime service.

    Args:
        url: The service (``ROOT``, ``ROOT/api`` or ``ROOT/runtime``). ``None`` reads
            ``PREFECT_QISKIT_RUNTIME_URL``; without it, this user's embedded service is used,
            started on demand.
        token: The API token. ``None`` with a URL reads ``PREFECT_QISKIT_RUNTIME_TOKEN``; ``None``
            without a URL uses the embedded service's local token.
        hub: Hub of the jobs this client submits (default: the account's default project).
        group: Group of the submitted jobs.
        project: Project of the submitted jobs.
        verify: ``True`` to check TLS certificates, ``False`` not to, or a CA bundle path.
        timeout: Seconds for connect and read, or a ``(connect, read)`` pair.
        retry: The transport's retry policy, or an attempt count (1 disables retries).

    Raises:
        IBMQInputValueError: If a URL is given without any token.
        EmbeddedServiceError: If the embedded service cannot be started.

    Example:
        >>> service = RuntimeService()  # doctest: +SKIP
        >>> job = service.run("hello-world", {"backend_name": "aer_simulator"}, {"iterations": 3})
        ... # doctest: +SKIP
        >>> job.result()  # doctest: +SKIP
        'All done!'
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        hub: str | None = None,
        group: str | None = None,
        project: str | None = None,
        verify: Verify = True,
        timeout: Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | int | None = None,
    ) -> None:
        if url is None:
            url = os.environ.get(URL_ENV) or None
        if url is None:
            from prefect_qiskit_runtime.client import embedded

            info = embedded.ensure()
            url = info.url
            token = token or info.token
        token = token or os.environ.get(TOKEN_ENV)
        if not token:
            raise IBMQInputValueError(f"A token is required for {url} (or set {TOKEN_ENV})")
        policy = RetryPolicy(max_attempts=retry) if isinstance(retry, int) else retry
        self._transport = Transport(url, token, verify=verify, timeout=timeout, retry=policy)
        self._hgp: tuple[str, str, str] | None = (
            (hub, group, project) if hub and group and project else None
        )
        self._hgp_hint = (hub, group, project)
        self._programs: dict[str, RuntimeProgram] = {}
        self._programs_listed = False

    def __repr__(self) -> str:
        return f"RuntimeService(url={self.url!r})"

    def __enter__(self) -> RuntimeService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release pooled connections."""
        self._transport.close()

    @property
    def url(self) -> str:
        """The service root URL."""
        return self._transport.root_url

    @property
    def transport(self) -> Transport:
        """The HTTP transport (for layers built on this client)."""
        return self._transport

    def _hub_group_project(self) -> tuple[str, str, str]:
        if self._hgp is None:
            networks = self._transport.request(
                "GET", "/Network", base="api", what="list hubs"
            ).json()
            choice: tuple[str, str, str] | None = None
            hub_hint, group_hint, project_hint = self._hgp_hint
            for hub in networks or []:
                if hub_hint and hub.get("name") != hub_hint:
                    continue
                for gname, group in (hub.get("groups") or {}).items():
                    if group_hint and gname != group_hint:
                        continue
                    for pname, proj in (group.get("projects") or {}).items():
                        if project_hint and pname != project_hint:
                            continue
                        candidate = (hub["name"], gname, pname)
                        if choice is None or (proj or {}).get("isDefault"):
                            choice = candidate
            if choice is None:
                raise IBMQInputValueError("No hub/group/project matches this account")
            self._hgp = choice
        return self._hgp

    def run(
        self,
        program_id: str,
        options: Mapping[str, Any],
        inputs: Mapping[str, Any] | ParameterNamespace,
        callback: Callback | None = None,
        result_decoder: Any = None,
        *,
        idempotency_key: str | None = None,
    ) -> RuntimeJob:
        """Run a program.

        Args:
            program_id: The program's id.
            options: ``backend_name`` (required), and optionally ``image`` (``name:tag``),
                ``log_level`` (``DEBUG`` ... ``CRITICAL``) and ``max_execution_time`` (seconds
                this job may run, replacing the program's own limit; a service extension).
            inputs: Program inputs, a dict or a ``ParameterNamespace``.
            callback: Called as ``callback(job_id, interim_result)`` for every interim result, in
                order, on a worker thread.
            result_decoder: A ``ResultDecoder`` class for the results (default ``ResultDecoder``).
            idempotency_key: Names this submission: submitting again with the same key returns the
                first job and runs nothing new. A fresh key is generated when omitted.

        Returns:
            The job.

        Raises:
            IBMQInputValueError: If ``backend_name`` is missing or the inputs are invalid.
            RuntimePayloadError: If an input cannot be encoded.
            RuntimeProgramNotFound: If the program does not exist.
            RequestsApiError: If the request failed.
        """
        from prefect_qiskit_runtime.core.codec import RuntimeEncoder

        if not options or not options.get("backend_name"):
            raise IBMQInputValueError('"backend_name" is required field in "options"')
        if isinstance(inputs, ParameterNamespace):
            inputs.validate()
            inputs = inputs.to_inputs()
        inputs = dict(inputs)
        backend_name = str(options["backend_name"])
        image = options.get("image") or None
        hub, group, project = self._hub_group_project()
        body: dict[str, Any] = {
            "program_id": program_id,
            "hub": hub,
            "group": group,
            "project": project,
            "backend": backend_name,
            "params": inputs,
            "runtime": image,
        }
        if options.get("log_level"):
            body["log_level"] = str(options["log_level"])
        if options.get("max_execution_time"):
            body["max_execution_time"] = int(options["max_execution_time"])
        try:
            text = json.dumps(body, cls=RuntimeEncoder)
        except (TypeError, ValueError) as exc:
            raise RuntimePayloadError(f"Cannot encode the inputs: {exc}") from exc
        response = self._transport.request(
            "POST",
            "/jobs",
            what=f"run program {program_id}",
            json_text=text,
            idempotency_key=idempotency_key or new_idempotency_key(),
            errors={404: RuntimeProgramNotFound},
        )
        return RuntimeJob(
            self._transport,
            response.json()["id"],
            program_id,
            backend_name=backend_name,
            inputs=inputs,
            result_decoder=result_decoder,
            user_callback=callback,
            image=image or "",
        )

    def job(self, job_id: str) -> RuntimeJob:
        """One job.

        Raises:
            RuntimeJobNotFound: If the job does not exist.
            QiskitRuntimeError: If the request failed.
        """
        obj = self._transport.request(
            "GET",
            f"/jobs/{job_id}",
            what=f"get job {job_id}",
            errors={404: RuntimeJobNotFound},
            fallback=QiskitRuntimeError,
        ).json()
        return RuntimeJob.from_wire(self._transport, obj)

    def open_channel(self, job: str | RuntimeJob, *, open_timeout: float = 60.0) -> JobChannel:
        """A channel for calls into a running job whose program serves them (one round trip each).

        Args:
            job: The job, or its id (its program calls ``user_messenger.receive()``).
            open_timeout: Seconds the first connection waits for a queued job to start.

        Returns:
            A :class:`~prefect_qiskit_runtime.client.channel.JobChannel`; it connects on the
            first call. Close it (or use it as a context manager) to tell the program to finish.

        Example:
            >>> job = service.run("estimator", {"backend_name": "aer_simulator"},
            ...                   {"serve": {"idle_timeout": 60}})  # doctest: +SKIP
            >>> with service.open_channel(job) as channel:  # doctest: +SKIP
            ...     result = channel.call({"pubs": [[circuit, {"ZZ": 1.0}, [0.1]]]})
        """
        job_id = job if isinstance(job, str) else job.job_id()
        return JobChannel(self._transport, job_id, open_timeout=open_timeout)

    def jobs(
        self,
        limit: int | None = 10,
        skip: int = 0,
        pending: bool | None = None,
        program_id: str | None = None,
    ) -> list[RuntimeJob]:
        """This user's jobs, newest first.

        Args:
            limit: Return at most this many; ``None`` returns all.
            skip: Skip this many first.
            pending: ``True`` for queued and running jobs only, ``False`` for final ones only.
            program_id: Only jobs of this program.

        Returns:
            The jobs.

        Raises:
            RequestsApiError: If a request failed.
        """
        found: list[RuntimeJob] = []
        offset = skip
        while limit is None or len(found) < limit:
            page_size = _JOB_PAGE if limit is None else min(_JOB_PAGE, limit - len(found))
            params: dict[str, Any] = {"limit": page_size}
            if offset:
                params["offset"] = offset
            if pending is not None:
                params["pending"] = "true" if pending else "false"
            if program_id:
                params["program"] = program_id
            body = self._transport.request("GET", "/jobs", what="list jobs", params=params).json()
            page = body.get("jobs", [])
            found.extend(RuntimeJob.from_wire(self._transport, obj) for obj in page)
            offset += len(page)
            # ``count`` is max(total, offset), so it also ends a skip past the last job.
            if not page or offset >= int(body.get("count", 0)):
                break
        return found if limit is None else found[:limit]

    def delete_job(self, job_id: str) -> None:
        """Delete a job (stopping it first if it runs).

        Raises:
            RuntimeJobNotFound: If the job does not exist.
            QiskitRuntimeError: If the request failed.
        """
        self._transport.request(
            "DELETE",
            f"/jobs/{job_id}",
            what=f"delete job {job_id}",
            errors={404: RuntimeJobNotFound},
            fallback=QiskitRuntimeError,
        )

    def logout(self) -> None:
        """Clear the service's authorisation cache for this user; later calls still work."""
        self._transport.request("POST", "/logout", what="log out")

    def backends(self) -> list[dict[str, Any]]:
        """The configuration documents of the service's backends.

        Returns:
            One dict per backend (``backend_name``, ``n_qubits``, ``basis_gates``...).
        """
        body = self._transport.request("GET", "/backends", what="list backends").json()
        backends: list[dict[str, Any]] = body.get("backends", [])
        return backends


__all__ = ["RuntimeService"]
