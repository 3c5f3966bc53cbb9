"""Runtime programs: uploads, built-ins, visibility and what a job submission needs of them."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from prefect_qiskit_runtime.server.store.engine import StoreBase
from prefect_qiskit_runtime.server.store.errors import DuplicateProgramError, ForbiddenError
from prefect_qiskit_runtime.server.store.tables import (
    PROGRAMS,
    SYSTEM_USER_ID,
    Program,
    decode_spec,
    utcnow,
)

#: What a job submission reads of a program the caller can see; with its source for a claim.
RUNNABLE_PROGRAM = select(PROGRAMS.c.id, PROGRAMS.c.cost, PROGRAMS.c.spec).where(
    PROGRAMS.c.id == bindparam("program_id"),
    or_(PROGRAMS.c.is_public.is_(True), PROGRAMS.c.owner_id == bindparam("user_id")),
)
RUNNABLE_PROGRAM_SOURCE = RUNNABLE_PROGRAM.add_columns(PROGRAMS.c.data)

_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class ProgramInfo:
    """What submitting a job needs of its program (not its source)."""

    id: str
    cost: int
    spec: str

    @property
    def spec_dict(self) -> dict[str, Any]:
        """The stored ``spec`` decoded."""
        return decode_spec(self.spec)


def _program_id(name: str) -> str:
    slug = _SLUG.sub("-", name.lower()).strip("-")[:40] or "program"
    return f"{slug}-{secrets.token_hex(3)}"


def _visible_programs(user_id: str) -> Any:
    return or_(Program.is_public.is_(True), Program.owner_id == user_id)


class ProgramStore(StoreBase):
    """The store's programs."""

    def new_program(
        self,
        s: Session,
        *,
        owner_id: str,
        name: str,
        data: str,
        cost: int,
        description: str,
        is_public: bool,
        spec: str,
    ) -> Program:
        """Add a program inside an open write session (see :meth:`idempotent`).

        Raises:
            DuplicateProgramError: If the owner already has a program called ``name``.
        """
        exists = s.scalars(
            select(Program.id).where(Program.owner_id == owner_id, Program.name == name)
        ).first()
        if exists is not None:
            raise DuplicateProgramError(name)
        now = utcnow()
        program = Program(
            id=_program_id(name),
            owner_id=owner_id,
            name=name,
            data=data,
            cost=cost,
            description=description,
            is_public=is_public,
            spec=spec,
            creation_date=now,
            update_date=now,
        )
        s.add(program)
        s.flush()
        return program

    def list_programs(self, user_id: str, limit: int, offset: int) -> tuple[list[Program], int]:
        """Programs the user can see, oldest first.

        Returns:
            The page and the exact total.
        """
        visible = _visible_programs(user_id)
        with self.read() as s:
            total = s.scalar(select(func.count()).select_from(Program).where(visible)) or 0
            rows = s.scalars(
                select(Program).where(visible).order_by(Program.n).offset(offset).limit(limit)
            )
            return list(rows), int(total)

    def get_program(self, program_id: str, user_id: str) -> Program | None:
        """The program if it exists and the user can see it."""
        with self.read() as s:
            return s.scalars(
                select(Program).where(Program.id == program_id, _visible_programs(user_id))
            ).first()

    def runnable_program(self, program_id: str, user_id: str) -> ProgramInfo | None:
        """What a job submission needs of a program the user can see (never its source)."""
        with self.core_read() as conn:
            row = conn.execute(
                RUNNABLE_PROGRAM, {"program_id": program_id, "user_id": user_id}
            ).first()
        return None if row is None else ProgramInfo(row.id, int(row.cost), row.spec or "{}")

    def _owned_program(self, s: Session, program_id: str, user_id: str) -> Program | None:
        program = s.scalars(
            select(Program).where(Program.id == program_id, _visible_programs(user_id))
        ).first()
        if program is None:
            return None
        if program.owner_id != user_id:
            raise ForbiddenError("FORBIDDEN", "Only the program's author may change it.")
        return program

    def update_program(
        self, program_id: str, user_id: str, changes: dict[str, Any]
    ) -> Program | None:
        """Change a program's fields (``name``, ``description``, ``cost``, ``spec``, ``data``,
        ``is_public``) and bump ``update_date``.

        ``spec`` must already be merged JSON text.

        Returns:
            The updated program, or ``None`` if the user cannot see it.

        Raises:
            ForbiddenError: If the user sees it but is not its author.
            DuplicateProgramError: If a rename collides with another of the user's programs.
        """
        with self.write() as s:
            program = self._owned_program(s, program_id, user_id)
            if program is None:
                return None
            new_name = changes.get("name")
            if new_name is not None and new_name != program.name:
                clash = s.scalars(
                    select(Program.id).where(Program.owner_id == user_id, Program.name == new_name)
                ).first()
                if clash is not None:
                    raise DuplicateProgramError(new_name)
            for field, value in changes.items():
                setattr(program, field, value)
            program.update_date = utcnow()
            return program

    def delete_program(self, program_id: str, user_id: str) -> bool:
        """Delete a program (its jobs stay).

        Returns:
            False if the user cannot see it.

        Raises:
            ForbiddenError: If the user sees it but is not its author.
        """
        with self.write() as s:
            program = self._owned_program(s, program_id, user_id)
            if program is None:
                return False
            s.delete(program)
            return True

    def upsert_builtin(self, program_id: str, source: str, metadata: dict[str, Any]) -> bool:
        """Install or refresh a built-in program owned by the system account.

        Args:
            program_id: The id (the file stem, such as ``hello-world``).
            source: The program's source.
            metadata: ``name``, ``description``, ``max_execution_time``, ``spec``.

        Returns:
            True if something was written.
        """
        name = str(metadata.get("name") or program_id)
        description = str(metadata.get("description") or "")
        cost = int(metadata.get("max_execution_time") or metadata.get("cost") or 300)
        spec = json.dumps(metadata.get("spec") or {})
        try:
            with self.write() as s:
                program = s.scalars(select(Program).where(Program.id == program_id)).first()
                if program is None:
                    now = utcnow()
                    s.add(
                        Program(
                            id=program_id,
                            owner_id=SYSTEM_USER_ID,
                            name=name,
                            data=source,
                            cost=cost,
                            description=description,
                            is_public=True,
                            spec=spec,
                            creation_date=now,
                            update_date=now,
                        )
                    )
                    return True
                current = (
                    program.name,
                    program.data,
                    program.cost,
                    program.description,
                    program.spec,
                )
                if current == (name, source, cost, description, spec) and program.is_public:
                    return False
                program.name, program.data, program.cost = name, source, cost
                program.description, program.spec, program.is_public = description, spec, True
                program.update_date = utcnow()
                return True
        except IntegrityError:
            # Another instance starting on the same database installed it a moment earlier.
            return False
