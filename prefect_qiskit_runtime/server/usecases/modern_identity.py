"""Identity for the modern Qiskit Runtime API: access tokens, the caller's instance, its usage.

``qiskit-ibm-runtime`` authenticates in two steps, both served here: it trades its API key for a
short-lived bearer token at an IAM token endpoint (``POST {IAM_URL}/identity/token``), then lists
the instances (CRNs) the token may use through the IBM Cloud Global Search and Global Catalog
APIs. Every user of this service has exactly one instance, whose CRN is derived from the user's
id (:func:`instance_crn`), so the client's ``Service-CRN`` header names the caller too and is
checked against the bearer token.

An access token is an opaque random credential. It is shaped like a JWT only because the client's
token manager reads its lifetime (``iat``, ``exp``) from the middle segment; the service never
trusts those claims: it checks the token by its stored SHA-256 and stored expiry, and the token
dies with the API token it was issued for.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from prefect_qiskit_runtime.server.store import User, isoformat
from prefect_qiskit_runtime.server.usecases.errors import (
    InvalidArgument,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
)

if TYPE_CHECKING:
    from prefect_qiskit_runtime.server.runtime import Runtime

#: Seconds an access token works (IBM Cloud IAM's own lifetime).
ACCESS_TOKEN_SECONDS = 3600
#: The OAuth grant type of an API key exchange.
APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"
#: The name of every user's single instance.
INSTANCE_NAME = "local"
#: The service plan of that instance, as the Global Catalog describes it.
PLAN_ID = "prefect-qiskit-runtime-local"
_PLAN = {
    "id": PLAN_ID,
    "name": "local",
    "kind": "plan",
    "overview_ui": {"en": {"display_name": "Local", "description": "Local simulators."}},
    "metadata": {"pricing": {"type": "free"}},
}


def instance_crn(user: User) -> str:
    """The Cloud Resource Name of ``user``'s instance.

    Its location (``local``) is no IBM Cloud region, so a client left with its default URL
    resolver could not mistake this service for IBM's.

    Args:
        user: The account.

    Returns:
        ``crn:v1:local:public:quantum-computing:local:a/<user id>:<user id>::``.
    """
    return f"crn:v1:local:public:quantum-computing:local:a/{user.id}:{user.id}::"


def check_instance(user: User, crn: str | None) -> None:
    """Refuse a ``Service-CRN`` other than the caller's own instance.

    Args:
        user: The caller.
        crn: The header, or ``None`` (then the caller's instance is meant).

    Raises:
        PermissionDenied: For another instance.
    """
    if crn is not None and crn.strip() != instance_crn(user):
        raise PermissionDenied("This instance is not available to this account.")


def _segment(value: dict[str, Any]) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def issue_access_token(
    runtime: Runtime, grant_type: str | None, apikey: str | None
) -> dict[str, Any]:
    """Exchange an API token for an access token, as IBM Cloud IAM's token endpoint does.

    Args:
        runtime: The service instance.
        grant_type: The form field ``grant_type``; only the API key grant is supported.
        apikey: The form field ``apikey``: an API token of this service.

    Returns:
        IAM's answer: ``access_token``, ``token_type``, ``expires_in``, ``expiration`` and a
        ``refresh_token`` the client never needs (it asks for a new token with its key).

    Raises:
        InvalidArgument: ``INVALID_REQUEST`` for another grant type.
        NotAuthenticated: For an unknown API token.
    """
    if grant_type != APIKEY_GRANT:
        raise InvalidArgument(
            "INVALID_REQUEST", f"Unsupported grant_type; use {APIKEY_GRANT!r} with an apikey."
        )
    user = runtime.tokens.lookup(apikey) if apikey else None
    if user is None or apikey is None:
        raise NotAuthenticated("Invalid or unknown API key.")
    issued = int(time.time())
    expiration = issued + ACCESS_TOKEN_SECONDS
    claims = {"iat": issued, "exp": expiration, "sub": user.id, "iss": "prefect-qiskit-runtime"}
    token = ".".join(
        (_segment({"alg": "none", "typ": "JWT"}), _segment(claims), secrets.token_urlsafe(32))
    )
    expires = datetime.fromtimestamp(expiration, tz=timezone.utc)
    if not runtime.store.store_access_token(apikey, token, expires):
        raise NotAuthenticated("Invalid or unknown API key.")  # deleted since the lookup
    return {
        "access_token": token,
        "refresh_token": "not_supported",
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_SECONDS,
        "expiration": expiration,
        "scope": "ibm openid",
    }


def search_instances(user: User) -> dict[str, Any]:
    """The Global Search answer listing the caller's instances: exactly one.

    Args:
        user: The caller.

    Returns:
        ``{"items": [...], "limit", "search_cursor": None}``.
    """
    item = {
        "crn": instance_crn(user),
        "name": INSTANCE_NAME,
        "service_plan_unique_id": PLAN_ID,
        "tags": [],
        "doc": {"extensions": {"backends": "local"}},
    }
    return {"items": [item], "limit": 100, "search_cursor": None}


def catalog_entry(entry_id: str) -> dict[str, Any]:
    """The Global Catalog entry of a service plan.

    Args:
        entry_id: The plan's id.

    Returns:
        The entry (display name and pricing type, all the client reads).

    Raises:
        NotFound: For any other id.
    """
    if entry_id != PLAN_ID:
        raise NotFound("NOT_FOUND", f"No catalog entry {entry_id[:100]!r}.")
    return json.loads(json.dumps(_PLAN))


def usage(runtime: Runtime, user: User) -> dict[str, Any]:
    """The instance's usage this calendar month (there is no limit).

    Args:
        runtime: The service instance.
        user: The caller.

    Returns:
        ``usage_consumed_seconds`` (time the caller's jobs ran), the period and
        ``usage_limit_reached`` (always false).
    """
    now = datetime.now(timezone.utc)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    consumed = runtime.store.run_seconds_since(user.id, start)
    return {
        "instance_id": instance_crn(user),
        "plan_id": PLAN_ID,
        "usage_consumed_seconds": round(consumed, 3),
        "usage_limit_reached": False,
        "usage_period": {"start_time": isoformat(start), "end_time": isoformat(end)},
    }


__all__ = [
    "ACCESS_TOKEN_SECONDS",
    "APIKEY_GRANT",
    "INSTANCE_NAME",
    "PLAN_ID",
    "catalog_entry",
    "check_instance",
    "instance_crn",
    "issue_access_token",
    "search_instances",
    "usage",
]
