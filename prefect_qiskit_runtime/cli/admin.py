"""Administration of a service home: ``users add|list|revoke``, and the listings that read its
store.

These commands open the home's database directly, so they work whether or not its service runs, and
they see every user's programs and jobs. ``programs list``, ``jobs list`` and ``logs`` read the
store this way when given ``--home`` or ``--database-url``; without, they ask a service as the
user whose token they hold.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from typing import Any

from prefect_qiskit_runtime.cli.context import FAILED, OK, USAGE, Context, home_path


def store_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--home`` and ``--database-url``: the store a command reads directly."""
    group = parser.add_argument_group("store (read directly, every user)")
    group.add_argument("--home", help="service home whose database to read")
    group.add_argument("--database-url", help="SQLAlchemy URL of the database (default: --home's)")


def uses_store(args: argparse.Namespace) -> bool:
    """Whether the command was asked to read a store rather than a service."""
    return bool(getattr(args, "home", None) or getattr(args, "database_url", None))


def add_parser(sub: Any) -> None:
    """Register ``users add|list|revoke`` on the top-level subparsers ``sub``."""
    users = sub.add_parser("users", help="manage the accounts of a service home")
    users_sub = users.add_subparsers(dest="action", required=True)
    add = users_sub.add_parser("add", help="create a user (or a new token); prints the token last")
    add.add_argument("name")
    add.add_argument("--can-upload", action="store_true", help="allow uploading programs")
    add.add_argument("--home")
    add.add_argument("--database-url")
    add.set_defaults(handler=_users_add)
    revoke = users_sub.add_parser(
        "revoke", help="delete a user's API tokens (all of them, or the one given with --token)"
    )
    revoke.add_argument("name")
    revoke.add_argument("--token", help="revoke only this token (default: every token of NAME)")
    revoke.add_argument("--home")
    revoke.add_argument("--database-url")
    revoke.set_defaults(handler=_users_revoke)
    users_list = users_sub.add_parser("list", help="list users")
    users_list.add_argument("--home")
    users_list.add_argument("--database-url")
    users_list.set_defaults(handler=_users_list)


def _store(args: argparse.Namespace) -> Any:
    from prefect_qiskit_runtime.server.config import ServiceConfig
    from prefect_qiskit_runtime.server.store import Store

    home = home_path(args.home)
    home.mkdir(parents=True, exist_ok=True)
    return Store(ServiceConfig(home=home, database_url=args.database_url).db_url)


def _users_add(ctx: Context) -> int:
    from prefect_qiskit_runtime.server.store import StoreError, create_user_token

    args = ctx.args
    try:
        token = create_user_token(
            home_path(args.home), args.name, args.can_upload, args.database_url
        )
    except StoreError as exc:
        print(exc.message, file=sys.stderr)
        return USAGE
    rights = "may upload programs" if args.can_upload else "may not upload programs"
    print(f"User {args.name!r} ({rights}). API token (shown once):")
    print(token)
    return OK


def _users_revoke(ctx: Context) -> int:
    from prefect_qiskit_runtime.server.store import StoreError

    args = ctx.args
    store = _store(args)
    try:
        revoked = store.revoke_tokens(args.name, args.token)
    except StoreError as exc:
        print(exc.message, file=sys.stderr)
        return USAGE
    finally:
        store.dispose()
    if args.token is not None and not revoked:
        print(f"That token is not one of {args.name!r}'s.", file=sys.stderr)
        return FAILED
    # A running service trusts a token it checked for up to 30 s (auth.TOKEN_CACHE_SECONDS).
    print(f"Revoked {revoked} token(s) of {args.name!r}; running services refuse them within 30 s.")
    return OK


def _print_rows(
    ctx: Context, read: Callable[[Any], Iterable[Any]], line: Callable[..., str]
) -> int:
    """Print ``line(*row)`` for every row ``read(store)`` returns, then close the store."""
    store = _store(ctx.args)
    try:
        rows = list(read(store))
    finally:
        store.dispose()
    for row in rows:
        print(line(*row))
    return OK


def _users_list(ctx: Context) -> int:
    return _print_rows(
        ctx,
        lambda store: ((user,) for user in store.list_users()),
        lambda user: f"{user.name}\tcan_upload={user.can_upload}\tcreated={user.created:%Y-%m-%d}",
    )


def store_programs(ctx: Context) -> int:
    """``programs list --home``: every program of the store, one tab-separated line each.

    Returns:
        0.
    """
    from sqlalchemy import select

    from prefect_qiskit_runtime.server.store import Program, User

    def read(store: Any) -> list[Any]:
        with store.read() as s:
            query = select(Program, User.name).join(User, User.id == Program.owner_id)
            return list(s.execute(query.order_by(Program.n)).all())

    def line(program: Any, owner: str) -> str:
        visibility = "public" if program.is_public else "private"
        return f"{program.id}\t{program.name}\t{owner}\t{visibility}\tcost={program.cost}"

    return _print_rows(ctx, read, line)


def store_jobs(ctx: Context) -> int:
    """``jobs list --home``: the newest jobs of every user, one tab-separated line each.

    Returns:
        0.
    """
    from sqlalchemy import select

    from prefect_qiskit_runtime.server.store import Job, isoformat

    def read(store: Any) -> list[Any]:
        with store.read() as s:
            query = select(Job).order_by(Job.n.desc()).limit(ctx.args.limit)
            return [(job,) for job in s.scalars(query)]

    def line(job: Any) -> str:
        created = isoformat(job.created)
        return f"{job.id}\t{job.program_id}\t{job.backend}\t{job.status}\t{created}"

    return _print_rows(ctx, read, line)


def store_logs(ctx: Context) -> int:
    """``logs JOB_ID --home``: a job's logs, read from the store.

    Returns:
        0, or 1 if there is no such job.
    """
    store = _store(ctx.args)
    try:
        job = store.get_job(ctx.args.job_id)
    finally:
        store.dispose()
    if job is None:
        print(f"No job {ctx.args.job_id}", file=sys.stderr)
        return FAILED
    sys.stdout.write(job.logs or "")
    return OK


__all__ = [
    "add_parser",
    "store_jobs",
    "store_logs",
    "store_options",
    "store_programs",
    "uses_store",
]
