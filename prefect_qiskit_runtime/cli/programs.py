"""``programs list|upload|show|update|delete|visibility``: programs through the client.

``upload`` and ``update`` read the metadata JSON in either form ``RuntimeService.upload_program``
reads: the flat form of the original documentation (``parameters``, ``return_values`` and
``interim_results`` as lists of ``{"name", "description", "type", "required"}`` at the top
level) or the ``spec`` form (JSON Schema under ``spec``). ``--name``, ``--description``,
``--max-execution-time`` and ``--public``/``--private`` win over the file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect_qiskit_runtime.cli import admin
from prefect_qiskit_runtime.cli.context import OK, Context, UsageError, positive_int

if TYPE_CHECKING:
    from prefect_qiskit_runtime.client import RuntimeProgram


def add_parser(sub: Any, client: argparse.ArgumentParser) -> None:
    """Register ``programs ...`` on the top-level subparsers ``sub``.

    Args:
        sub: The top-level subparsers.
        client: The parent parser of the client options.
    """
    programs = sub.add_parser("programs", help="upload and manage programs")
    programs_sub = programs.add_subparsers(dest="action", required=True)

    listing = programs_sub.add_parser(
        "list",
        parents=[client],
        help="the programs you can run (with --home: every program, from the store)",
    )
    admin.store_options(listing)
    listing.set_defaults(handler=_list)

    upload = programs_sub.add_parser("upload", parents=[client], help="upload a program")
    upload.add_argument("file", type=Path, help="the program's source (a .py with main)")
    _metadata_options(upload)
    visibility = upload.add_mutually_exclusive_group()
    visibility.add_argument(
        "--public", dest="is_public", action="store_true", default=None, help="runnable by all"
    )
    visibility.add_argument(
        "--private", dest="is_public", action="store_false", help="yours only (the default)"
    )
    upload.set_defaults(handler=_upload)

    show = programs_sub.add_parser("show", parents=[client], help="a program's metadata")
    show.add_argument("program_id")
    show.add_argument("--source", action="store_true", help="print its source (yours only)")
    show.set_defaults(handler=_show)

    update = programs_sub.add_parser(
        "update", parents=[client], help="replace a program's source and/or edit its metadata"
    )
    update.add_argument("program_id")
    update.add_argument("--data", type=Path, metavar="FILE", help="the new source")
    _metadata_options(update)
    update.set_defaults(handler=_update)

    delete = programs_sub.add_parser("delete", parents=[client], help="delete a program")
    delete.add_argument("program_id")
    delete.set_defaults(handler=_delete)

    visible = programs_sub.add_parser(
        "visibility", parents=[client], help="make a program public or private"
    )
    visible.add_argument("program_id")
    visible.add_argument("visibility", choices=("public", "private"))
    visible.set_defaults(handler=_visibility)


def _metadata_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metadata", type=Path, metavar="FILE", help="metadata JSON (flat/spec)")
    parser.add_argument("--name", help="program name")
    parser.add_argument("--description", help="what the program does")
    parser.add_argument(
        "--max-execution-time", type=positive_int, metavar="SECONDS", help="a job's time limit"
    )


def _metadata_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The values of :func:`_metadata_options`, as keyword arguments of ``upload_program``."""
    return {
        "metadata": args.metadata,
        "name": args.name,
        "description": args.description,
        "max_execution_time": args.max_execution_time,
    }


def program_dict(program: RuntimeProgram) -> dict[str, Any]:
    """A program's metadata as ``--json`` prints it (without its source).

    Args:
        program: The program.

    Returns:
        ``RuntimeProgram.to_dict()`` plus ``creation_date`` and ``update_date``.
    """
    return {
        **program.to_dict(),
        "creation_date": program.creation_date,
        "update_date": program.update_date,
    }


def _list(ctx: Context) -> int:
    if admin.uses_store(ctx.args):
        return admin.store_programs(ctx)
    programs = ctx.service.programs(refresh=True)
    if ctx.out.json:
        ctx.out.data([program_dict(p) for p in programs])
        return OK
    ctx.out.table(
        ("ID", "Name", "Public", "Max time (s)", "Description"),
        [
            (p.program_id, p.name, p.is_public, p.max_execution_time, p.description)
            for p in programs
        ],
        no_wrap=("ID", "Name"),
    )
    return OK


def _upload(ctx: Context) -> int:
    args = ctx.args
    program_id = ctx.service.upload_program(
        args.file, is_public=args.is_public, **_metadata_arguments(args)
    )
    if ctx.out.json:
        ctx.out.data({"id": program_id})
    else:
        ctx.out.line(program_id)
    return OK


def _show(ctx: Context) -> int:
    program = ctx.service.program(ctx.args.program_id, refresh=True)
    if ctx.args.source:
        source = program.data
        if ctx.out.json:
            ctx.out.data({"id": program.program_id, "data": source})
        else:
            ctx.out.line(source.rstrip("\n"))
        return OK
    if ctx.out.json:
        ctx.out.data(program_dict(program))
        return OK
    ctx.out.fields(
        [
            ("ID", program.program_id),
            ("Name", program.name),
            ("Description", program.description),
            ("Max execution time (s)", program.max_execution_time),
            ("Public", program.is_public),
            ("Created", program.creation_date),
            ("Updated", program.update_date),
            ("Backend requirements", program.backend_requirements or None),
            ("Interim results", program.interim_results or None),
            ("Returns", program.return_values or None),
        ]
    )
    schema = program.parameters().metadata
    properties: dict[str, Any] = schema.get("properties") or {}
    if properties:
        required = set(schema.get("required") or [])
        ctx.out.table(
            ("Input", "Type", "Required", "Default", "Description"),
            [
                (
                    name,
                    (spec or {}).get("type"),
                    name in required,
                    (spec or {}).get("default"),
                    (spec or {}).get("description"),
                )
                for name, spec in properties.items()
            ],
            title="Inputs",
            no_wrap=("Input",),
        )
    return OK


def _update(ctx: Context) -> int:
    args = ctx.args
    changes = _metadata_arguments(args)
    if args.data is None and all(change is None for change in changes.values()):
        raise UsageError(
            "nothing to update: give --data, --metadata, --name, --description "
            "or --max-execution-time"
        )
    ctx.service.update_program(args.program_id, data=args.data, **changes)
    ctx.out.done("updated", args.program_id)
    return OK


def _delete(ctx: Context) -> int:
    ctx.service.delete_program(ctx.args.program_id)
    ctx.out.done("deleted", ctx.args.program_id)
    return OK


def _visibility(ctx: Context) -> int:
    ctx.service.set_program_visibility(ctx.args.program_id, ctx.args.visibility == "public")
    ctx.out.done(f"made {ctx.args.visibility}", ctx.args.program_id)
    return OK


__all__ = ["add_parser", "program_dict"]
