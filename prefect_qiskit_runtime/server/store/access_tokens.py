"""Short-lived access tokens the modern API's token endpoint issues for an API token.

Only their SHA-256 is stored, with the API token they were issued for: deleting that API token
(or its user) revokes them at once, and an expired one is refused by its stored expiry, whatever
the token text claims.
"""

from __future__ import annotations

import hmac
from datetime import datetime

from sqlalchemy import bindparam, delete, select

from prefect_qiskit_runtime.server.store.engine import StoreBase
from prefect_qiskit_runtime.server.store.session_tables import ACCESS_TOKENS
from prefect_qiskit_runtime.server.store.tables import TOKENS, USERS, User, utcnow
from prefect_qiskit_runtime.server.store.users import _user_from_row, hash_token

#: Longest token (API or access) worth hashing; longer ones are unknown by construction.
MAX_TOKEN_LENGTH = 512

_USER_BY_ACCESS_TOKEN = (
    select(ACCESS_TOKENS.c.token_hash, ACCESS_TOKENS.c.expires, USERS)
    .join(TOKENS, TOKENS.c.token_hash == ACCESS_TOKENS.c.api_token_hash)
    .join(USERS, USERS.c.id == TOKENS.c.user_id)
    .where(ACCESS_TOKENS.c.token_hash == bindparam("digest"))
)


class AccessTokenStore(StoreBase):
    """The store's access tokens."""

    def store_access_token(self, api_token: str, access_token: str, expires: datetime) -> bool:
        """Remember ``access_token`` for the user of ``api_token`` until ``expires``.

        Expired tokens of every user are dropped in the same transaction, so the table holds only
        live ones.

        Args:
            api_token: The API token presented to the token endpoint (already checked).
            access_token: The new access token.
            expires: When it stops working.

        Returns:
            False if the API token is unknown (then nothing is stored).
        """
        if not api_token or len(api_token) > MAX_TOKEN_LENGTH:
            return False
        with self.core_write() as conn:
            conn.execute(delete(ACCESS_TOKENS).where(ACCESS_TOKENS.c.expires < utcnow()))
            api_hash = hash_token(api_token)
            known = conn.execute(
                select(TOKENS.c.token_hash).where(TOKENS.c.token_hash == api_hash)
            ).first()
            if known is None:
                return False
            conn.execute(
                ACCESS_TOKENS.insert(),
                {
                    "token_hash": hash_token(access_token),
                    "api_token_hash": api_hash,
                    "expires": expires,
                },
            )
        return True

    def user_for_access_token(self, token: str | None) -> User | None:
        """The user an unexpired access token was issued to, or ``None``."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        digest = hash_token(token)
        with self.core_read() as conn:
            row = conn.execute(_USER_BY_ACCESS_TOKEN, {"digest": digest}).first()
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        if row.expires <= utcnow():
            return None
        user = _user_from_row(row._mapping)
        return None if user.is_system else user


__all__ = ["MAX_TOKEN_LENGTH", "AccessTokenStore"]
