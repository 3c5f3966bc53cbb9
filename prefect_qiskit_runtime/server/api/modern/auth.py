"""Who calls the modern API: the bearer token of ``Authorization`` and the ``Service-CRN``.

``qiskit-ibm-runtime`` sends ``Authorization: Bearer <access token>`` (from the token endpoint)
and ``Service-CRN: <instance>``; when it could not get an access token it falls back to
``Authorization: apikey <API token>``, which is accepted too (an API token is what
``X-Access-Token`` carries on the old API). The instance must be the caller's own.
"""

from __future__ import annotations

from fastapi import Header, Request

from prefect_qiskit_runtime.server.auth import authenticate
from prefect_qiskit_runtime.server.runtime import runtime_of
from prefect_qiskit_runtime.server.store import User
from prefect_qiskit_runtime.server.usecases.errors import NotAuthenticated
from prefect_qiskit_runtime.server.usecases.modern_identity import check_instance

AuthorizationHeader = Header(
    default=None,
    alias="Authorization",
    description="Bearer <access token from /iam/identity/token>, or apikey <API token>.",
)


async def bearer_user(request: Request, authorization: str | None = AuthorizationHeader) -> User:
    """The caller named by the ``Authorization`` header (no instance check).

    Raises:
        NotAuthenticated: For a missing, unknown or expired credential.
    """
    scheme, _, credential = (authorization or "").strip().partition(" ")
    runtime = runtime_of(request)
    credential = credential.strip()
    user = None
    if credential and scheme.lower() == "bearer":
        user = await authenticate(runtime.access_tokens, credential)
    elif credential and scheme.lower() == "apikey":
        user = await authenticate(runtime.tokens, credential)
    if user is None:
        raise NotAuthenticated("Missing, invalid or expired Authorization credential.")
    return user


async def modern_user(
    request: Request,
    authorization: str | None = AuthorizationHeader,
    service_crn: str | None = Header(
        default=None, alias="Service-CRN", description="The caller's instance (from search)."
    ),
) -> User:
    """The caller of a runtime route: authenticated, and using its own instance.

    Raises:
        NotAuthenticated: For a missing, unknown or expired credential.
        PermissionDenied: For another instance.
    """
    user = await bearer_user(request, authorization)
    check_instance(user, service_crn)
    return user


__all__ = ["bearer_user", "modern_user"]
