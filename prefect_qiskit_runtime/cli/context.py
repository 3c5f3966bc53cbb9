"""What every command shares: argument types, the client options, the exit codes and the errors.

Exit codes follow Prefect's CLI: :data:`OK` (0), :data:`FAILED` (1: the command or the job failed,
or what it names was not found) and :data:`USAGE` (2: the command line itself is wrong; argparse
exits with 2 too). A client command names its service with ``--url``/``--token`` (or
``PREFECT_QISKIT_RUNTIME_URL``/``PREFECT_QISKIT_RUNTIME_TOKEN``, read by the client), and with
neither talks to this user's embedded service, as ``RuntimeService()`` does. An error of the
service or of the connection becomes one ``error: ...`` line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from prefect_qiskit_runtime.cli.output import Output

if TYPE_CHECKING:
    from prefect_qiskit_runtime.client import RuntimeService

OK = 0
FAILED = 1
USAGE = 2
#: The conventional exit code of a command stopped with Ctrl-C.
INTERRUPTED = 130

Handler = Callable[["Context"], int]


class UsageError(Exception):
    """The command line is wrong in a way argparse cannot see (a malformed ``--inputs``...)."""


def positive_int(value: str) -> int:
    """An argparse type: a positive integer.

    Raises:
        argparse.ArgumentTypeError: If ``value`` is not one.
    """
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value}")
    return number


def home_path(value: str | None) -> Path:
    """The service home ``value`` names, or the default home (``PREFECT_QISKIT_RUNTIME_HOME``...).

    Args:
        value: A directory given on the command line, or ``None``.

    Returns:
        The directory (not created).
    """
    from prefect_qiskit_runtime.server.config import default_home

    return Path(value).expanduser() if value else default_home()


def client_options() -> argparse.ArgumentParser:
    """A parent parser with the options of every command that talks to a service.

    Returns:
        The parser, to pass in ``parents=[...]`` (it adds no help of its own).
    """
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("service")
    group.add_argument(
        "--url",
        help="the runtime service (default: $PREFECT_QISKIT_RUNTIME_URL, else your embedded one)",
    )
    group.add_argument(
        "--token", help="API token (default: $PREFECT_QISKIT_RUNTIME_TOKEN with a URL)"
    )
    group.add_argument("--ca-bundle", metavar="PEM", help="trust this CA bundle (self-signed TLS)")
    group.add_argument("--insecure", action="store_true", help="do not check TLS certificates")
    parent.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parent


class Context:
    """One command's arguments, its output, and its service, opened on first use.

    Args:
        args: The parsed command line.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Output(json_mode=bool(getattr(args, "json", False)))
        self._service: RuntimeService | None = None

    @property
    def service(self) -> RuntimeService:
        """The client of the service the options name (the embedded one by default).

        Raises:
            UsageError: If both ``--ca-bundle`` and ``--insecure`` were given.
            EmbeddedServiceError: If the embedded service cannot be started.
            IBMQInputValueError: If the URL is malformed or a URL has no token.
        """
        if self._service is None:
            from prefect_qiskit_runtime.client import RuntimeService

            verify: bool | str = True
            ca_bundle = getattr(self.args, "ca_bundle", None)
            if ca_bundle and getattr(self.args, "insecure", False):
                raise UsageError("--ca-bundle and --insecure exclude each other")
            if getattr(self.args, "insecure", False):
                import urllib3

                # Asked for explicitly: a warning on every request would only drown the output.
                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
                verify = False
            elif ca_bundle:
                verify = str(Path(ca_bundle).expanduser())
            self._service = RuntimeService(
                getattr(self.args, "url", None), getattr(self.args, "token", None), verify=verify
            )
        return self._service

    def where(self) -> str:
        """The service in words, for error messages."""
        if self._service is not None:
            return self._service.url
        return getattr(self.args, "url", None) or "the runtime service"

    def close(self) -> None:
        """Release the service's connections, if one was opened."""
        if self._service is not None:
            self._service.close()


def run(handler: Handler, args: argparse.Namespace) -> int:
    """Run one command and turn what it raises into an exit code and one line on stderr.

    Args:
        handler: The command.
        args: Its parsed command line.

    Returns:
        The exit code.
    """
    from prefect_qiskit_runtime.core.exceptions import QiskitRuntimeError

    ctx = Context(args)
    try:
        return handler(ctx)
    except UsageError as exc:
        ctx.out.error(str(exc))
        return USAGE
    except QiskitRuntimeError as exc:
        message, code = describe(exc, ctx.where())
        ctx.out.error(message)
        return code
    except KeyboardInterrupt:
        return INTERRUPTED
    finally:
        ctx.close()


def describe(exc: Exception, where: str) -> tuple[str, int]:
    """The message and exit code of a client error.

    Args:
        exc: What the client raised.
        where: The service's URL, or words naming it.

    Returns:
        ``(message, exit code)``: connection and token problems in one line; an input the client
        refused before sending anything is a usage error.
    """
    from prefect_qiskit_runtime.core.exceptions import (
        EmbeddedServiceError,
        IBMQInputValueError,
        RuntimeAuthenticationError,
        RuntimeServiceUnavailable,
    )

    message = str(exc)
    if isinstance(exc, RuntimeAuthenticationError):
        return one_line(f"{where} refused the token: {message}"), FAILED
    if isinstance(exc, RuntimeServiceUnavailable | EmbeddedServiceError):
        # The embedded service's message ends with its log's tail; its first line says it all.
        return one_line(message.splitlines()[0] if message else repr(exc)), FAILED
    if isinstance(exc, IBMQInputValueError) and getattr(exc, "status_code", None) is None:
        return message, USAGE
    return message, FAILED


def one_line(text: str) -> str:
    """``text`` with every run of whitespace, newlines included, made one space."""
    return re.sub(r"\s+", " ", text).strip()
