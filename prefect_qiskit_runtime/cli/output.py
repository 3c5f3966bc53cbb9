"""How the commands print: rich tables for people, JSON for scripts (``--json``), errors on stderr.

Everything read from the service is printed as text, never as rich markup, so a program name or a
result holding ``[bold]`` prints as it is. When stdout is not a terminal (a pipe, a file) and
``COLUMNS`` is unset, lines may be up to :data:`PIPE_WIDTH` wide instead of rich's 80, so ids and
JSON are not folded.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

#: Width of rich output into a pipe or a file (without ``COLUMNS``).
PIPE_WIDTH = 200


def to_json(value: Any, *, compact: bool = False) -> str:
    """``value`` as JSON text (datetimes and other unknown values as strings).

    Args:
        value: A JSON-like value.
        compact: One line instead of an indented document.

    Returns:
        The text.
    """
    return json.dumps(value, indent=None if compact else 2, default=_plain, ensure_ascii=False)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def cell(value: Any) -> str:
    """One table cell: ``""`` for nothing, yes/no for flags, compact JSON for structures."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dict | list):
        return to_json(value, compact=True)
    return str(value)


class Output:
    """The printing of one command.

    Args:
        json_mode: Whether the command was given ``--json``.
    """

    def __init__(self, json_mode: bool = False) -> None:
        self.json = json_mode
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        """The rich console on stdout."""
        if self._console is None:
            from rich.console import Console

            wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
            self._console = Console(highlight=False, width=PIPE_WIDTH if wide else None)
        return self._console

    def data(self, value: Any, *, compact: bool = False) -> None:
        """Print ``value`` as JSON on stdout (what ``--json`` prints)."""
        print(to_json(value, compact=compact), flush=True)

    def line(self, text: str) -> None:
        """Print one plain line on stdout."""
        print(text, flush=True)

    def done(self, what: str, ident: str) -> None:
        """Report that ``what`` (``"deleted"``...) happened to ``ident``: a line, or JSON."""
        if self.json:
            self.data({"id": ident, "done": what})
        else:
            self.line(f"{what} {ident}")

    def error(self, message: str) -> None:
        """Print ``error: message`` on stderr."""
        print(f"error: {message}", file=sys.stderr, flush=True)

    def value(self, value: Any) -> None:
        """Print a result: text as it is, anything else as JSON."""
        if isinstance(value, str):
            self.line(value)
        else:
            self.console.print_json(to_json(value))

    def table(
        self,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        title: str | None = None,
        no_wrap: Collection[str] = (),
    ) -> None:
        """Print a table.

        Args:
            columns: The headers.
            rows: One sequence of cells per row (see :func:`cell`).
            title: A title above it.
            no_wrap: Headers of the columns never folded (ids).
        """
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title)
        for name in columns:
            table.add_column(name, no_wrap=name in no_wrap)
        for row in rows:
            table.add_row(*(Text(cell(v)) for v in row))
        self.console.print(table)

    def fields(self, pairs: Iterable[tuple[str, Any]], *, title: str | None = None) -> None:
        """Print ``name  value`` pairs as a two-column table without a header.

        Args:
            pairs: The names and values (see :func:`cell`).
            title: A title above them.
        """
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title, show_header=False, box=None, padding=(0, 2, 0, 0))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for name, value in pairs:
            table.add_row(Text(name), Text(cell(value)))
        self.console.print(table)


class WireDecoder:
    """Decodes a result or interim result only as far as JSON: tagged values stay as they travel.

    The command line prints what the service sent; turning tags into Qiskit objects would only
    import Qiskit to print them back as text.
    """

    @staticmethod
    def decode(text: str) -> Any:
        """The JSON value of ``text``, or ``text`` itself when it is not JSON."""
        try:
            return json.loads(text)
        except ValueError:
            return text


__all__ = ["PIPE_WIDTH", "Output", "WireDecoder", "cell", "to_json"]
