"""Settings of one runtime service instance.

Everything the service needs to know at start-up lives in :class:`ServiceConfig`; the CLI builds it
from its flags, tests may build it directly. Nothing here imports Qiskit or Prefect.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from prefect_qiskit_runtime.server.executors.base import Executor

#: Environment variable that overrides the default service home.
HOME_ENV = "PREFECT_QISKIT_RUNTIME_HOME"
APP_NAME = "prefect-qiskit-runtime"


def default_home() -> Path:
    """Return the service home: ``$PREFECT_QISKIT_RUNTIME_HOME`` or the per-user data directory.

    Returns:
        The directory (not created).

    Example:
        >>> isinstance(default_home(), Path)
        True
    """
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def sqlite_url(path: Path) -> str:
    """Return the SQLAlchemy URL of a SQLite database file.

    Args:
        path: The database file.

    Returns:
        ``sqlite:///<absolute path>``.
    """
    return f"sqlite:///{path.resolve()}"


@dataclass
class ServiceConfig:
    """Settings of one service instance.

    Args:
        home: Directory that holds the database, job working directories and TLS files.
        database_url: Any SQLAlchemy URL; ``None`` means SQLite at ``<home>/runtime.db``.
        host: Interface to listen on.
        port: TCP port; 0 picks a free one.
        workers: How many jobs may run at once (the executor's capacity).
        memory_limit_mb: Address-space limit of each job's process, ``None`` for none.
        tls_cert: Certificate file (PEM) to serve HTTPS; needs ``tls_key``.
        tls_key: Private key file (PEM) of ``tls_cert``.
        idle_timeout: Exit after this many seconds with no request and no running job.
        max_upload_bytes: Largest accepted request body (program source, job params).
        max_message_bytes: Largest interim message a program may publish; larger ones are dropped.
        log_limit_bytes: Job logs beyond this size are cut by the executor.
        plain_stream_grace: A job that ended longer than this before its first plain stream
            connection gets no replay (``spec/runtime-api.md`` §5).
        max_wait_seconds: Upper bound of the long-poll ``?wait=``.
        status_grace: Modern API: a read of a job younger than this many seconds that is still
            pending waits for its end until the job is that old (0 answers at once).
        executor_factory: Builds the executor; ``None`` uses the local fork pool.
        db_busy_timeout: SQLite only: seconds a write waits for a lock held by another process
            before it fails (and is retried, for a job's end).
        sandbox: Confinement of job processes by the local executor: ``auto`` (Landlock where the
            kernel has it, else none, with a warning), ``landlock`` (refuse to start without it)
            or ``off``.
        load_builtin_programs: Whether to install the built-in programs at start-up.
        lease_seconds: How long an instance's heartbeat stays good: another instance fails the
            RUNNING jobs of one whose heartbeat is older (an instance on the same host whose
            process is gone is recognised at once). Heartbeats are sent every quarter of it, at
            most every 5 seconds.
    """

    home: Path
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    memory_limit_mb: int | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    idle_timeout: float | None = None
    max_upload_bytes: int = 10 * 1024 * 1024
    max_message_bytes: int = 4 * 1024 * 1024
    log_limit_bytes: int = 1_000_000
    plain_stream_grace: float = 10.0
    max_wait_seconds: float = 60.0
    status_grace: float = 0.5
    executor_factory: Callable[[ServiceConfig], Executor] | None = None
    db_busy_timeout: float = 30.0
    sandbox: Literal["auto", "landlock", "off"] = "auto"
    load_builtin_programs: bool = True
    lease_seconds: float = 60.0

    @property
    def heartbeat_seconds(self) -> float:
        """How often this instance renews its lease and looks for instances that are gone."""
        return min(5.0, self.lease_seconds / 4)

    @property
    def db_url(self) -> str:
        """The effective database URL."""
        return self.database_url or sqlite_url(self.home / "runtime.db")

    @property
    def protected_paths(self) -> list[Path]:
        """What no job process may read: the home and, when it is SQLite, the database file."""
        from sqlalchemy.engine import make_url

        paths = [self.home]
        url = make_url(self.db_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            paths.append(Path(str(url.database)))
        return paths

    @property
    def jobs_dir(self) -> Path:
        """Parent directory of the per-job working directories."""
        return self.home / "jobs"

    def job_workdir(self, job_id: str, session_id: str | None = None) -> Path:
        """A job's working directory; a dedicated session's jobs have theirs in the session's."""
        if session_id is None:
            return self.jobs_dir / job_id
        return self.jobs_dir / f"session-{session_id}" / job_id

    @property
    def tls_enabled(self) -> bool:
        """Whether the service serves HTTPS."""
        return self.tls_cert is not None and self.tls_key is not None


__all__ = ["HOME_ENV", "ServiceConfig", "default_home", "sqlite_url"]
