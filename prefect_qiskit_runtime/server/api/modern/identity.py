"""Routes the modern client calls before the runtime API: IAM's token endpoint, and the Global
Search and Global Catalog lookups that list its instance.

Point the client at them with ``IAM_URL=ROOT/iam``, ``GLOBAL_SEARCH_URL=ROOT/global-search`` and
``GLOBAL_CATALOG_URL=ROOT/global-catalog`` (``docs/tutorials/qiskit-ibm-runtime.md``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Path, Request
from starlette.concurrency import run_in_threadpool

from prefect_qiskit_runtime.server.runtime import runtime_of
from prefect_qiskit_runtime.server.store import User
from prefect_qiskit_runtime.server.usecases import modern_identity as identity
from prefect_qiskit_runtime.server.usecases.errors import InvalidArgument

from .auth import bearer_user

router = APIRouter(tags=["modern: identity"])

_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "grant_type": {"type": "string", "example": identity.APIKEY_GRANT},
                        "apikey": {"type": "string"},
                    },
                    "required": ["grant_type", "apikey"],
                }
            }
        },
    }
}


def _form_field(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[0] if values else None


@router.post(
    "/iam/identity/token",
    summary="Exchange an API token for an access token (IBM Cloud IAM's token endpoint)",
    openapi_extra=_FORM,
)
async def identity_token(request: Request) -> dict[str, Any]:
    """Form fields ``grant_type=urn:ibm:params:oauth:grant-type:apikey`` and ``apikey``."""
    raw = await request.body()
    try:
        fields = parse_qs(raw.decode("utf-8"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise InvalidArgument("INVALID_REQUEST", "The body must be a URL-encoded form.") from None
    grant, apikey = _form_field(fields, "grant_type"), _form_field(fields, "apikey")
    # The token check and the new token's row touch the database: off the event loop.
    return await run_in_threadpool(identity.issue_access_token, runtime_of(request), grant, apikey)


@router.post(
    "/global-search/v3/resources/search",
    summary="The caller's instances (IBM Cloud Global Search): exactly one",
)
def search_resources(user: User = Depends(bearer_user)) -> dict[str, Any]:
    """Whatever the query, the one instance of the caller."""
    return identity.search_instances(user)


@router.get(
    "/global-catalog/{entry_id}",
    summary="A service plan (IBM Cloud Global Catalog)",
)
def catalog_entry(
    entry_id: str = Path(max_length=200), user: User = Depends(bearer_user)
) -> dict[str, Any]:
    """The plan of the caller's instance; any other id is not found."""
    return identity.catalog_entry(entry_id)


__all__ = ["router"]
