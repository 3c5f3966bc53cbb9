"""The state one service instance holds: config, store, broker, scheduler, executor, metrics.

:func:`prefect_qiskit_runtime.server.app.create_app` builds one :class:`Runtime` per app and keeps
it in ``app.state.runtime``; the routes and the use cases reach everything through it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from prefect_qiskit_runtime.core.models import JobState
from prefect_qiskit_runtime.server.auth import TokenCache
from prefect_qiskit_runtime.server.broker import Broker
from prefect_qiskit_runtime.server.config import ServiceConfig
from prefect_qiskit_runtime.server.executors.base import Executor
from prefect_qiskit_runtime.server.scheduler import Scheduler
from prefect_qiskit_runtime.server.store import Store

if TYPE_CHECKING:
    from prefect_qiskit_runtime.server.relay import PostgresRelay

logger = logging.getLogger("prefect_qiskit_runtime.server")


@dataclass
class Activity:
    """What the idle timeout and the metrics need to know about traffic."""

    inflight: int = 0
    last: float = field(default_factory=time.monotonic)

    def touch(self) -> None:
        """Record activity now."""
        self.last = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since the last request ended (0 while one is in flight)."""
        return 0.0 if self.inflight else time.monotonic() - self.last


class Metrics:
    """Prometheus metrics of one app (own registry, so several apps can live in one process).

    Args:
        runtime: The instance whose jobs, streams and store the gauges read at scrape time.
    """

    def __init__(self, runtime: Runtime) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        from prometheus_client.core import GaugeMetricFamily

        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "pqr_http_requests",
            "HTTP requests and websocket connections handled.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pqr_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["method", "route"],
            registry=self.registry,
        )
        self.jobs_submitted = Counter("pqr_jobs_submitted", "Jobs created.", registry=self.registry)
        self.jobs_finished = Counter(
            "pqr_jobs_finished",
            "Jobs that reached a final status.",
            ["status"],
            registry=self.registry,
        )
        self.channel_calls = Counter(
            "pqr_channel_calls",
            "Calls relayed into running jobs over their channels, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        running = Gauge(
            "pqr_jobs_running_here", "Jobs this instance runs now.", registry=self.registry
        )
        running.set_function(
            lambda: float(runtime.scheduler.running_count if runtime.scheduler else 0)
        )
        streams = Gauge(
            "pqr_stream_subscriptions",
            "Open stream and long-poll subscriptions.",
            registry=self.registry,
        )
        streams.set_function(lambda: float(runtime.broker.subscriber_count()))
        relayed = Gauge(
            "pqr_relay_notifications",
            "Job events sent to and received from other replicas (PostgreSQL LISTEN/NOTIFY).",
            ["direction"],
            registry=self.registry,
        )
        relayed.labels("sent").set_function(
            lambda: float(runtime.relay.sent if runtime.relay else 0)
        )
        relayed.labels("received").set_function(
            lambda: float(runtime.relay.received if runtime.relay else 0)
        )

        class _JobsByStatus:
            def collect(self) -> Any:
                family = GaugeMetricFamily("pqr_jobs", "Stored jobs by status.", labels=["status"])
                try:
                    counts = runtime.store.status_counts()
                except Exception:  # a scrape must never fail because the database is busy
                    counts = {}
                for state in JobState:
                    family.add_metric([state.value], float(counts.get(state.value, 0)))
                yield family

        self.registry.register(_JobsByStatus())  # type: ignore[arg-type]


class Runtime:
    """Everything one service instance holds: config, store, broker, scheduler, metrics.

    Args:
        config: Service settings.
    """

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        config.home.mkdir(parents=True, exist_ok=True)
        self.store = Store(config.db_url, busy_timeout=config.db_busy_timeout)
        self.tokens = TokenCache(self.store)
        #: The modern API's bearer tokens (``/iam/identity/token``), cached the same way.
        self.access_tokens = TokenCache(self.store, resolve=self.store.user_for_access_token)
        self.broker = Broker()
        self.scheduler: Scheduler | None = None
        #: Job events to and from the other replicas (PostgreSQL only).
        self.relay: PostgresRelay | None = None
        self.executor: Executor | None = None
        self.activity = Activity()
        self.started_at = time.time()
        self.metrics = Metrics(self)

    async def start(self) -> None:
        """Prepare the store, install built-in programs, start the executor and the scheduler."""
        await asyncio.to_thread(self.store.ensure_system_user)
        if self.config.load_builtin_programs:
            await asyncio.to_thread(_install_builtins, self.store)
        factory = self.config.executor_factory or default_executor
        self.executor = factory(self.config)
        self.scheduler = Scheduler(
            self.store,
            self.broker,
            self.executor,
            self.config,
            on_job_end=lambda _job, status: self.metrics.jobs_finished.labels(status).inc(),
        )
        if not self.store.is_sqlite:
            from prefect_qiskit_runtime.server.relay import PostgresRelay

            self.relay = PostgresRelay(
                self.config.db_url,
                self.broker,
                self.scheduler.instance_id,
                on_remote_final=self.scheduler.instances.check_soon,
            )
            await self.relay.start()
        failed = await self.scheduler.start()
        for job_id in failed:
            self.broker.publish_final(job_id, JobState.FAILED.value)

    async def stop(self) -> None:
        """Stop the scheduler (and with it the executor), the relay, and close the database."""
        if self.scheduler is not None:
            await self.scheduler.shutdown()
        if self.relay is not None:
            await self.relay.stop()
        self.store.dispose()

    @property
    def idle_seconds(self) -> float:
        """Seconds with no request in flight, no open stream and no running job."""
        if self.scheduler is not None and self.scheduler.running_count:
            return 0.0
        return self.activity.idle_for()


def default_executor(config: ServiceConfig) -> Executor:
    """The local warm fork pool sized by ``config.workers``.

    Args:
        config: Service settings (workers, memory limit, largest interim message, sandbox).

    Returns:
        A new, not yet started ``LocalExecutor``.
    """
    from prefect_qiskit_runtime.server.executors.local import LocalExecutor

    return LocalExecutor(
        config.workers,
        memory_limit_mb=config.memory_limit_mb,
        max_message_bytes=config.max_message_bytes,
        sandbox=config.sandbox,
        protected_paths=config.protected_paths,
    )


def runtime_of(connection: HTTPConnection) -> Runtime:
    """The :class:`Runtime` of the app serving a request or a websocket.

    Args:
        connection: The request or websocket.

    Returns:
        ``app.state.runtime``.
    """
    runtime: Runtime = connection.app.state.runtime
    return runtime


def _install_builtins(store: Store) -> None:
    try:
        from prefect_qiskit_runtime.server.programs import builtin_programs
    except ImportError:
        logger.warning("built-in programs are not available")
        return
    for program_id, source, metadata in builtin_programs():
        try:
            if store.upsert_builtin(program_id, source, metadata):
                logger.info("installed built-in program %s", program_id)
        except Exception:
            logger.exception("could not install built-in program %s", program_id)


__all__ = ["Activity", "Metrics", "Runtime", "default_executor", "runtime_of"]
