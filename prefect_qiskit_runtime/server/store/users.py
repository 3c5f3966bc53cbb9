"""Accounts and their API tokens (stored hashed)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.exc import IntegrityError

from prefect_qiskit_runtime.server.store.engine import StoreBase
from prefect_qiskit_runtime.server.store.errors import StoreError
from prefect_qiskit_runtime.server.store.tables import SYSTEM_USER_ID, TOKENS, USERS, Token, User

_USER_BY_TOKEN = (
    select(TOKENS.c.token_hash, USERS)
    .join(USERS, USERS.c.id == TOKENS.c.user_id)
    .where(TOKENS.c.token_hash == bindparam("digest"))
)


def hash_token(token: str) -> str:
    """Return the stored form of an API token.

    Tokens are 256-bit random strings, so one round of SHA-256 is enough: there is nothing to
    brute-force that a slow hash would protect.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _user_from_row(mapping: Any) -> User:
    return User(
        id=mapping["id"],
        name=mapping["name"],
        can_upload=bool(mapping["can_upload"]),
        is_system=bool(mapping["is_system"]),
        created=mapping["created"],
    )


class UserStore(StoreBase):
    """The store's accounts."""

    def ensure_system_user(self) -> None:
        """Create the system account that owns the built-in programs (it has no token)."""
        try:
            with self.write() as s:
                if s.get(User, SYSTEM_USER_ID) is None:
                    s.add(User(id=SYSTEM_USER_ID, name="system", can_upload=True, is_system=True))
        except IntegrityError:
            # Another instance starting on the same database created it a moment earlier.
            pass

    def add_user(self, name: str, can_upload: bool = False) -> tuple[User, str]:
        """Create a user, or give an existing one another token.

        Args:
            name: Unique user name.
            can_upload: Allow uploading programs. For an existing user this only ever grants.

        Returns:
            The user and the new API token (shown once; only its hash is stored).

        Raises:
            StoreError: If ``name`` is empty or the system account's.
        """
        name = name.strip()
        if not name or name == "system":
            raise StoreError("INVALID_NAME", f"Invalid user name {name!r}.")
        token = "pqr_" + secrets.token_urlsafe(32)
        with self.write() as s:
            user = s.scalars(select(User).where(User.name == name)).first()
            if user is None:
                user = User(id=secrets.token_hex(8), name=name, can_upload=can_upload)
                s.add(user)
                s.flush()
            elif can_upload and not user.can_upload:
                user.can_upload = True
            s.add(Token(token_hash=hash_token(token), user_id=user.id))
        return user, token

    def revoke_tokens(self, name: str, token: str | None = None) -> int:
        """Delete the API tokens of a user: all of them, or only ``token``.

        Args:
            name: The user.
            token: One of the user's tokens; ``None`` revokes every token of the user.

        Returns:
            How many tokens were deleted (0 when the token is not the user's).

        Raises:
            StoreError: If there is no such user.
        """
        with self.write() as s:
            user = s.scalars(select(User).where(User.name == name.strip())).first()
            if user is None or user.is_system:
                raise StoreError("USER_NOT_FOUND", f"No user named {name!r}.")
            query = delete(Token).where(Token.user_id == user.id)
            if token is not None:
                query = query.where(Token.token_hash == hash_token(token))
            return int(s.execute(query).rowcount or 0)  # type: ignore[attr-defined]

    def user_for_token(self, token: str | None) -> User | None:
        """Return the user a token belongs to, or ``None``.

        Args:
            token: The API token as sent by a client.
        """
        if not token or len(token) > 512:
            return None
        digest = hash_token(token)
        with self.core_read() as conn:
            row = conn.execute(_USER_BY_TOKEN, {"digest": digest}).first()
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        user = _user_from_row(row._mapping)
        return None if user.is_system else user

    def list_users(self) -> list[User]:
        """Every account except the system one, oldest first."""
        with self.read() as s:
            return list(
                s.scalars(select(User).where(User.is_system.is_(False)).order_by(User.created))
            )
