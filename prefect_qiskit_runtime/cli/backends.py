"""``backends list``: the backends a service offers, from ``GET /runtime/backends``."""

from __future__ import annotations

import argparse
from typing import Any

from prefect_qiskit_runtime.cli.context import OK, Context


def add_parser(sub: Any, client: argparse.ArgumentParser) -> None:
    """Register ``backends list`` on the top-level subparsers ``sub``.

    Args:
        sub: The top-level subparsers.
        client: The parent parser of the client options.
    """
    backends = sub.add_parser("backends", help="the backends of a service")
    backends_sub = backends.add_subparsers(dest="action", required=True)
    listing = backends_sub.add_parser(
        "list", parents=[client], help="every backend with its qubit count and whether it is noisy"
    )
    listing.set_defaults(handler=_list)


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The facts ``backends list`` shows of one configuration document.

    Args:
        doc: A backend's configuration document.

    Returns:
        ``name``, ``n_qubits``, ``noisy`` (``None`` from a service that does not say),
        ``simulator``, ``max_shots`` and ``description``.
    """
    return {
        "name": doc.get("backend_name"),
        "n_qubits": doc.get("n_qubits"),
        "noisy": doc.get("noisy"),
        "simulator": doc.get("simulator"),
        "max_shots": doc.get("max_shots"),
        "description": doc.get("description"),
    }


def _list(ctx: Context) -> int:
    rows = [summary(doc) for doc in ctx.service.backends()]
    if ctx.out.json:
        ctx.out.data(rows)
    else:
        ctx.out.table(
            ("Name", "Qubits", "Noisy", "Simulator", "Max shots", "Description"),
            [list(row.values()) for row in rows],
            no_wrap=("Name",),
        )
    return OK


__all__ = ["add_parser", "summary"]
