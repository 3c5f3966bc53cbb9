"""The ``prefect-qiskit-runtime`` command line.

Commands::

    server start [--host H] [--port P] [--home DIR] [--database-url URL] [--workers N] ...
    server stop|status [--home DIR]                the service serving a home
    users add NAME [--can-upload] [--home DIR]     prints the new token last
    users list [--home DIR]
    programs list | upload FILE [--metadata FILE] | show ID | update ID | delete ID
             | visibility ID public|private
    jobs list | run PROGRAM [--backend B] [--inputs JSON|@FILE] [--wait] | show ID | cancel ID
         | delete ID | result ID | watch ID
    backends list
    logs JOB_ID

The commands on programs, jobs and backends talk to a runtime service through the client: this
user's embedded service by default, a shared one with ``--url``/``--token`` (or
``PREFECT_QISKIT_RUNTIME_URL``/``PREFECT_QISKIT_RUNTIME_TOKEN``), ``--ca-bundle``/``--insecure``
for TLS. They print rich tables, or JSON with ``--json``, and exit 0 when all went well, 1 when the
command or the job failed or what it names was not found, 2 for a usage error (see
:mod:`~prefect_qiskit_runtime.cli.context`). ``users`` and, given ``--home``/``--database-url``,
``programs list``, ``jobs list`` and ``logs`` read a home's store directly, whether or not its
service runs. Importing this package imports neither Prefect nor Qiskit.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from prefect_qiskit_runtime._version import __version__
from prefect_qiskit_runtime.cli import admin, backends, jobs, programs, server, watch
from prefect_qiskit_runtime.cli.context import client_options, run
from prefect_qiskit_runtime.cli.server import serve


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command.

    Returns:
        The parser; each command's namespace has its ``handler``.
    """
    parser = argparse.ArgumentParser(
        prog="prefect-qiskit-runtime",
        description="Qiskit Runtime programs on a local or shared runtime service.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    client = client_options()
    server.add_parser(sub)
    admin.add_parser(sub)
    programs.add_parser(sub, client)
    watch.add_parser(jobs.add_parser(sub, client), client)
    backends.add_parser(sub, client)
    jobs.add_logs_parser(sub, client)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``prefect-qiskit-runtime`` console script.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    args = build_parser().parse_args(argv)
    return run(args.handler, args)


__all__ = ["build_parser", "main", "serve"]
