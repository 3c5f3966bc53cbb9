"""``server start|stop|status``: run the runtime service, and find or stop the one serving a home.

``server start`` runs in the foreground, logs to stderr and stops cleanly on SIGTERM or SIGINT;
every service records itself in its home (``embedded.json``), however it was started, so that
``server status``/``server stop --home`` and clients reusing the home find it. This module never
imports Prefect or Qiskit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect_qiskit_runtime._version import __version__
from prefect_qiskit_runtime.cli.context import (
    FAILED,
    OK,
    USAGE,
    Context,
    UsageError,
    home_path,
    positive_int,
)
from prefect_qiskit_runtime.client.embedded import SERVICE_RECORD
from prefect_qiskit_runtime.server.executors.base import ExecutorUnavailable
from prefect_qiskit_runtime.server.executors.sandbox import SandboxUnavailable

logger = logging.getLogger("prefect_qiskit_runtime.cli")

#: Names ``--executor`` takes besides MODULE:FACTORY.
EXECUTOR_SHORTHANDS = {"ray": "prefect_qiskit_runtime.server.executors.rayexec:factory"}


def _port(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return number


def add_parser(sub: Any) -> None:
    """Register ``server start|stop|status`` on the top-level subparsers ``sub``."""
    server = sub.add_parser("server", help="run or control the runtime service")
    server_sub = server.add_subparsers(dest="action", required=True)
    start = server_sub.add_parser("start", help="run the service in the foreground")
    start.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    start.add_argument("--port", type=_port, default=8000, help="TCP port; 0 picks a free one")
    start.add_argument("--home", help="service home (database, job directories, TLS files)")
    start.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite under --home)")
    start.add_argument(
        "--workers",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="jobs that may run at once (default: the number of cores)",
    )
    start.add_argument("--memory-limit-mb", type=positive_int, help="memory limit of each job")
    start.add_argument(
        "--db-busy-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="SQLite: how long a write waits for another process's lock (default 30)",
    )
    start.add_argument(
        "--lease-seconds",
        type=_lease_seconds,
        default=60.0,
        metavar="SECONDS",
        help="replicas on one database: another replica fails the running jobs of one whose "
        "heartbeat is older than this (one on the same host is recognised at once when its "
        "process is gone; default 60)",
    )
    start.add_argument(
        "--sandbox",
        choices=("auto", "landlock", "off"),
        default="auto",
        help="confine job processes to their own directory with Landlock: auto (where the kernel "
        "has it), landlock (refuse to start without it) or off (default auto)",
    )
    start.add_argument("--tls-cert", help="PEM certificate to serve HTTPS")
    start.add_argument("--tls-key", help="PEM private key of --tls-cert")
    start.add_argument(
        "--tls-self-signed",
        action="store_true",
        help="serve HTTPS with a certificate for localhost/127.0.0.1 kept in <home>/tls",
    )
    start.add_argument(
        "--ready-file", help="write {'url', 'pid'} here once connections are accepted"
    )
    start.add_argument(
        "--idle-timeout",
        type=float,
        help="exit after this many seconds with no request and no running job",
    )
    start.add_argument(
        "--executor",
        help="'ray' (run jobs on a Ray cluster) or, advanced, MODULE:FACTORY building the "
        "executor from the ServiceConfig",
    )
    start.add_argument(
        "--ray-address",
        help="with --executor ray: the cluster's HOST:PORT (default "
        "$PREFECT_QISKIT_RUNTIME_RAY_ADDRESS, else the cluster on this machine)",
    )
    start.add_argument(
        "--stream-replay-grace",
        type=float,
        default=10.0,
        help="seconds after its end during which a job's first plain stream still replays its "
        "messages (default 10)",
    )
    start.add_argument("--access-log", action="store_true", help="log every request")
    start.add_argument("--log-level", default="INFO", help="service log level (default INFO)")
    start.set_defaults(handler=lambda ctx: serve(ctx.args))
    for name in ("stop", "status"):
        cmd = server_sub.add_parser(
            name,
            help="stop the service of a home"
            if name == "stop"
            else "print the service of a home as JSON (url, pid, version, start time, uptime)",
        )
        cmd.add_argument("--home", help="service home (default: the per-user data directory)")
        cmd.set_defaults(handler=_stop if name == "stop" else _status)


# ---------------------------------------------------------------------------------------------
# server start


def _public_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Name the protocol: accepted sockets inherit it, and asyncio sets TCP_NODELAY only on sockets
    # whose proto is IPPROTO_TCP. Without it every kept-alive answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Owner-only: the service record names a port that accepts the local user's token.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(data))
    os.replace(tmp, path)


def _remove_if_ours(path: Path) -> None:
    """Remove a record this process wrote, unless a newer service of the same home replaced it."""
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()


def _lease_seconds(value: str) -> float:
    """An argparse type: a lease of at least 2 seconds (heartbeats go every quarter of it)."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value}") from None
    if not seconds >= 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 seconds, not {value}")
    return seconds


def _load_factory(spec: str) -> Callable[..., Any]:
    module_name, _, attr = EXECUTOR_SHORTHANDS.get(spec, spec).partition(":")
    if not module_name or not attr:
        raise UsageError(f"--executor must be MODULE:FACTORY, not {spec!r}")
    factory: Callable[..., Any] = getattr(importlib.import_module(module_name), attr)
    return factory


def serve(args: argparse.Namespace) -> int:
    """Run the service until SIGTERM/SIGINT or the idle timeout.

    Args:
        args: The parsed ``server start`` command line.

    Returns:
        The process exit code: 0 after a clean stop, 1 if it never started, 2 if the sandbox it
        was asked for is unavailable.

    Raises:
        UsageError: If the TLS or executor options contradict each other or are malformed.
    """
    import uvicorn

    from prefect_qiskit_runtime.server.app import create_app
    from prefect_qiskit_runtime.server.config import ServiceConfig
    from prefect_qiskit_runtime.server.store import DatabaseUnavailable

    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.tls_self_signed and (args.tls_cert or args.tls_key):
        raise UsageError("use either --tls-self-signed or --tls-cert/--tls-key")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    if args.ray_address:
        os.environ["PREFECT_QISKIT_RUNTIME_RAY_ADDRESS"] = args.ray_address
    home = home_path(args.home)
    home.mkdir(parents=True, exist_ok=True)
    cert: Path | None = Path(args.tls_cert) if args.tls_cert else None
    key: Path | None = Path(args.tls_key) if args.tls_key else None
    if args.tls_self_signed:
        from prefect_qiskit_runtime.server.tls import ensure_self_signed

        cert, key = ensure_self_signed(home)

    config = ServiceConfig(
        home=home,
        database_url=args.database_url,
        host=args.host,
        port=args.port,
        workers=args.workers,
        memory_limit_mb=args.memory_limit_mb,
        tls_cert=cert,
        tls_key=key,
        idle_timeout=args.idle_timeout,
        plain_stream_grace=args.stream_replay_grace,
        executor_factory=_load_factory(args.executor) if args.executor else None,
        sandbox=args.sandbox,
        db_busy_timeout=args.db_busy_timeout,
        lease_seconds=args.lease_seconds,
    )
    sock = _bind(args.host, args.port)
    port = sock.getsockname()[1]
    scheme = "https" if config.tls_enabled else "http"
    url = f"{scheme}://{_public_host(args.host)}:{port}"
    try:
        if config.executor_factory is not None:
            # Built before serving, so that an executor that cannot run here (a missing extra, no
            # cluster) stops the start with one line rather than a traceback from the lifespan.
            executor = config.executor_factory(config)
            config.executor_factory = lambda _config: executor
        app = create_app(config)
    except (SandboxUnavailable, DatabaseUnavailable, ExecutorUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sock.close()
        return USAGE
    runtime = app.state.runtime
    ready_file = Path(args.ready_file) if args.ready_file else None
    # Every service records itself in its home, however it was started, so that `server status`
    # and `server stop --home` (and clients reusing the home's service) find it.
    record_file = home / SERVICE_RECORD

    uv_config = uvicorn.Config(
        app,
        log_config=None,
        access_log=args.access_log,
        ssl_certfile=str(cert) if cert else None,
        ssl_keyfile=str(key) if key else None,
        # Idle TLS keep-alive connections wait for a close_notify the client never sends; do not let
        # them hold a stop for long (long-polls are cancelled too, and clients retry).
        timeout_graceful_shutdown=3,
        lifespan="on",
    )

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            # uvicorn re-raises a captured signal after its graceful shutdown, which would end the
            # process "killed by SIGTERM"; a clean stop is exit code 0 here.
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                logger.info("runtime service %s ready at %s (home %s)", __version__, url, home)
                record = {
                    "url": url,
                    "pid": os.getpid(),
                    "home": str(home.resolve()),
                    "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "version": __version__,
                    "tls_cert": str(cert.resolve()) if cert else None,
                }
                _write_json_atomic(record_file, record)
                if ready_file is not None:
                    _write_json_atomic(ready_file, record)

    server = _Server(uv_config)

    async def watch_idle() -> None:
        assert config.idle_timeout is not None
        while not server.should_exit:
            await asyncio.sleep(1.0)
            if server.started and runtime.idle_seconds >= config.idle_timeout:
                logger.info("idle for %.0f s; stopping", config.idle_timeout)
                server.should_exit = True

    async def main() -> None:
        watcher = asyncio.create_task(watch_idle()) if config.idle_timeout else None
        try:
            await server.serve(sockets=[sock])
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        for path in (record_file, ready_file):
            if path is not None:
                _remove_if_ours(path)
    return 0 if server.started else 1


# ---------------------------------------------------------------------------------------------
# server stop | status


def _embedded() -> Any:
    from prefect_qiskit_runtime.client import embedded

    return embedded


def _stop(ctx: Context) -> int:
    home = Path(ctx.args.home).expanduser() if ctx.args.home else None
    ctx.out.line("stopped" if _embedded().stop(home) else "not running")
    return OK


def _status(ctx: Context) -> int:
    home = Path(ctx.args.home).expanduser() if ctx.args.home else None
    info = _embedded().status(home)
    if info is None:
        ctx.out.line("not running")
        return FAILED
    ctx.out.line(json.dumps(info, indent=2, default=str))
    return OK


__all__ = ["add_parser", "serve"]
