"""Idempotency keys: the first answer to a POST, replayed for every repeat of its key."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from prefect_qiskit_runtime.server.store.engine import StoreBase
from prefect_qiskit_runtime.server.store.tables import IDEMPOTENCY, IdempotencyKey

_ANSWER = select(IDEMPOTENCY.c.status_code, IDEMPOTENCY.c.body).where(
    IDEMPOTENCY.c.user_id == bindparam("user_id"), IDEMPOTENCY.c.key == bindparam("key")
)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer remembered for an idempotency key."""

    status_code: int
    body: dict[str, Any]
    replayed: bool = False


def read_answer(conn: Connection, user_id: str, key: str) -> Answer | None:
    """The answer stored for ``(user_id, key)``, read on an open connection.

    Args:
        conn: A Core connection (inside a write transaction, it sees that transaction's view).
        user_id: The caller.
        key: The ``Idempotency-Key``.

    Returns:
        The stored answer (``replayed``), or ``None``.
    """
    row = conn.execute(_ANSWER, {"user_id": user_id, "key": key}).first()
    if row is None:
        return None
    return Answer(row.status_code, json.loads(row.body), True)


class IdempotencyStore(StoreBase):
    """The store's idempotency answers."""

    def idempotent(
        self,
        user_id: str,
        key: str | None,
        scope: str,
        create: Callable[[Session], Answer],
    ) -> Answer:
        """Run ``create`` once per ``(user, key)``, storing its answer in the same transaction.

        Args:
            user_id: The caller.
            key: The ``Idempotency-Key`` header, or ``None`` to always create.
            scope: What the key was used for (``POST /runtime/jobs``), kept for diagnostics.
            create: Makes the object inside the given session and returns the answer.

        Returns:
            The first answer; ``replayed`` is true when it comes from an earlier request.
        """
        if key:
            stored = self.stored_answer(user_id, key)
            if stored is not None:
                return stored
        try:
            with self.write() as s:
                if key:
                    # Checked again inside the write lock: another request may have won meanwhile.
                    row = s.get(IdempotencyKey, (user_id, key))
                    if row is not None:
                        return Answer(row.status_code, json.loads(row.body), True)
                answer = create(s)
                if key:
                    s.add(
                        IdempotencyKey(
                            user_id=user_id,
                            key=key,
                            scope=scope,
                            status_code=answer.status_code,
                            body=json.dumps(answer.body),
                        )
                    )
            return answer
        except IntegrityError as exc:
            return self._answer_after_conflict(user_id, key, exc)

    def stored_answer(self, user_id: str, key: str) -> Answer | None:
        """The answer stored for ``(user_id, key)`` by :meth:`idempotent`, if any."""
        with self.core_read() as conn:
            return read_answer(conn, user_id, key)

    def _answer_after_conflict(
        self, user_id: str, key: str | None, error: IntegrityError
    ) -> Answer:
        """The answer of a concurrent request (other instance or process) that stored ``key`` first.

        Raises:
            IntegrityError: ``error`` again, when no stored answer explains it.
        """
        if key:
            stored = self.stored_answer(user_id, key)
            if stored is not None:
                return stored
        raise error
