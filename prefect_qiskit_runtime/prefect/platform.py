"""The IBM Quantum Platform credentials block: primitive jobs through ``qiskit-ibm-runtime``.

:class:`QiskitRuntimePlatformCredentials` says where a Qiskit Runtime endpoint of the modern API is
(IBM Quantum Platform, or a service of this package) and who you are on it. Put it in a
:class:`~prefect_qiskit_runtime.prefect.blocks.QiskitRuntimeBackend`'s ``credentials`` and the
primitive tasks (``run_sampler``, ``run_estimator``) send their jobs through ``qiskit-ibm-runtime``.

``qiskit-ibm-runtime`` is an optional dependency (``pip install 'prefect-qiskit-runtime[ibm]'``),
imported only when a client is built; without it :func:`import_ibm_runtime` raises
:class:`~prefect_qiskit_runtime.core.exceptions.MissingExtraError`. Building, saving or loading the
block makes no network call and needs no ``qiskit-ibm-runtime``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any, ClassVar

from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, PrivateAttr, SecretStr, field_validator

from prefect_qiskit_runtime.core.exceptions import MissingExtraError
from prefect_qiskit_runtime.prefect._blockutils import _DOCS, _LOGO, _ClientCache

__all__ = ["QiskitRuntimePlatformCredentials", "import_ibm_runtime"]

#: The extra that installs ``qiskit-ibm-runtime``.
IBM_EXTRA = "ibm"
#: The client's IBM Cloud SDKs read these when a ``QiskitRuntimeService`` is built.
_ENDPOINT_VARIABLES = ("IAM_URL", "GLOBAL_SEARCH_URL", "GLOBAL_CATALOG_URL")
# Environment variables are process-wide: one client is built at a time while they are set.
_ENV_LOCK = threading.Lock()


def import_ibm_runtime() -> ModuleType:
    """Import ``qiskit_ibm_runtime``, or say which extra installs it.

    Returns:
        The ``qiskit_ibm_runtime`` module.

    Raises:
        MissingExtraError: It is not installed.
    """
    try:
        return importlib.import_module("qiskit_ibm_runtime")
    except ImportError as exc:
        raise MissingExtraError(
            "IBM Quantum Platform jobs need qiskit-ibm-runtime: "
            f"pip install 'prefect-qiskit-runtime[{IBM_EXTRA}]' ({exc})"
        ) from exc


def runtime_api_url(
    url: str, instance: str | None = None, private_endpoint: bool | None = False, channel: str = ""
) -> str:
    """The client's ``url_resolver`` for a non-IBM endpoint: its runtime API is ``ROOT/api/v1``."""
    del instance, private_endpoint, channel
    return url.rstrip("/") + "/api/v1"


@contextlib.contextmanager
def _endpoint_environment(values: dict[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` for the ``with`` block only, one block at a time.

    Every variable of :data:`_ENDPOINT_VARIABLES` is restored afterwards (unset if it was unset).
    The client reads them only while it is built: its token managers and search clients keep the
    URLs they were given, so nothing later depends on them.
    """
    if not values:
        yield
        return
    with _ENV_LOCK:
        saved = {name: os.environ.get(name) for name in _ENDPOINT_VARIABLES}
        os.environ.update(values)
        try:
            yield
        finally:
            for name, old in saved.items():
                if old is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = old


class QiskitRuntimePlatformCredentials(CredentialsBlock):
    """Credentials of a Qiskit Runtime endpoint of the modern API (IBM Quantum Platform).

    Leave ``url`` empty for IBM Quantum Platform itself: ``token`` is an IBM Cloud API key and
    ``instance`` the CRN or name of a Qiskit Runtime instance. Set ``url`` to the root of another
    endpoint that serves IAM, Global Search/Catalog and the runtime API under one root, such as a
    service of this package (``prefect-qiskit-runtime server start``; the token is then the
    user's API token). ``get_client()`` returns a ``qiskit_ibm_runtime.QiskitRuntimeService``,
    cached per block and thread. Needs the ``ibm`` extra.

    Example:
        Load stored platform credentials and list the endpoint's backends:

        ```python
        from prefect_qiskit_runtime import QiskitRuntimePlatformCredentials

        platform = QiskitRuntimePlatformCredentials.load("BLOCK_NAME")
        service = platform.get_client()  # a qiskit_ibm_runtime.QiskitRuntimeService
        print(service.backends())
        ```
    """

    _block_type_name: ClassVar[str] = "Qiskit Runtime Platform Credentials"
    _block_type_slug: ClassVar[str] = "qiskit-runtime-platform-credentials"
    _logo_url: ClassVar[Any] = _LOGO
    _documentation_url: ClassVar[Any] = f"{_DOCS}/tutorials/qiskit-ibm-runtime/"

    token: SecretStr = Field(
        title="API Key",
        description="IBM Cloud API key (or the API token of a prefect-qiskit-runtime service).",
    )
    instance: str | None = Field(
        default=None,
        description="CRN or name of the Qiskit Runtime instance; empty picks one automatically.",
    )
    url: str | None = Field(
        default=None,
        title="Endpoint URL",
        description=(
            "Root URL of a non-IBM endpoint, such as http://127.0.0.1:8000 for a "
            "prefect-qiskit-runtime service. Leave empty for IBM Quantum Platform."
        ),
    )
    verify_tls: bool = Field(
        default=True,
        title="Verify TLS",
        description=(
            "Check the endpoint's TLS certificate; turn off only for testing. For a self-signed "
            "endpoint, set REQUESTS_CA_BUNDLE in the environment of the flow's process instead."
        ),
    )
    _clients: _ClientCache = PrivateAttr(default_factory=_ClientCache)

    @field_validator("url", "instance", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().rstrip("/") if value.strip() else None
        return value

    def _fingerprint(self) -> str:
        parts = [
            self.token.get_secret_value(),
            self.instance or "",
            self.url or "",
            str(self.verify_tls),
        ]
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()

    def endpoint_environment(self) -> dict[str, str]:
        """The environment the client must see while it is built (empty for IBM's own)."""
        values: dict[str, str] = {}
        if self.url:
            values = {
                "IAM_URL": f"{self.url}/iam",
                "GLOBAL_SEARCH_URL": f"{self.url}/global-search",
                "GLOBAL_CATALOG_URL": f"{self.url}/global-catalog",
            }
        return values

    def job_url(self, job_id: str) -> str:
        """Where a person (IBM's console) or a client (another endpoint's REST API) finds a job."""
        if self.url:
            return f"{runtime_api_url(self.url)}/jobs/{job_id}"
        return f"https://quantum.cloud.ibm.com/jobs/{job_id}"

    def get_client(self) -> Any:
        """Return a ``QiskitRuntimeService`` for these credentials, cached per block and thread.

        The first call in a thread builds the client, which asks IAM for an access token and
        Global Search for the instance: this is the first network call.

        Returns:
            A ``qiskit_ibm_runtime.QiskitRuntimeService``.

        Raises:
            MissingExtraError: ``qiskit-ibm-runtime`` is not installed.
        """
        key = self._fingerprint()
        client = self._clients.get(key)
        if client is None:
            ibm = import_ibm_runtime()
            kwargs: dict[str, Any] = {}
            if self.url:
                kwargs = {"url": self.url, "url_resolver": runtime_api_url}
            with _endpoint_environment(self.endpoint_environment()):
                client = ibm.QiskitRuntimeService(
                    channel="ibm_quantum_platform",
                    token=self.token.get_secret_value(),
                    instance=self.instance or "auto",
                    verify=self.verify_tls,
                    **kwargs,
                )
            self._clients.put(key, client)
        return client
