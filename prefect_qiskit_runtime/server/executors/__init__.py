"""Executors run jobs for the scheduler; the scheduler owns the store and the job states.

Modules:

- :mod:`.base`: the interface (:class:`~.base.Executor`, :class:`~.base.ExecutorEvents`,
  :class:`~.base.JobSpec`, :class:`~.base.Outcome`);
- the local executor, in the service process: :mod:`.local` (:class:`~.local.LocalExecutor`),
  :mod:`.parent` (the warm parent's process and control channel), :mod:`.jobs` (the job
  processes' connections), :mod:`.outcome` (how a job ended);
- the warm parent, a process of its own: :mod:`.warm` (its loop and entry point), :mod:`.spares`
  (forking, spares, warm-ups), :mod:`.child` (a forked process: isolation, limits, the job);
- :mod:`.ipc`: the frames all of them exchange;
- the Ray executor (the ``ray`` extra, ``server start --executor ray``): :mod:`.rayexec`
  (:class:`~.rayexec.RayExecutor`, in the service process), :mod:`.rayjob` (what a Ray worker runs
  for one job), :mod:`.raycluster` (a throw-away local cluster to try it). Nothing imports Ray
  until the Ray executor connects.

Adding an executor:

1. Subclass :class:`~.base.Executor`. Set ``capacity`` (the scheduler never has more jobs
   submitted at once) and implement the four coroutines: ``start(events)`` (may return before
   it is warm; keep ``events``), ``submit(spec)`` (return once the job is handed over),
   ``cancel(job_id)`` (stop it within a second; False for an unknown job) and ``shutdown()``
   (stop everything; running jobs then get no ``on_finished``).
2. Report through the :class:`~.base.ExecutorEvents` given to ``start``, on the service's event
   loop: ``on_started`` once the program is about to run, ``on_messages`` with interim results
   in publish order (one call at a time per job), and ``on_finished`` exactly once per submitted
   job with an :class:`~.base.Outcome` (``COMPLETED``, ``FAILED``, ``CANCELLED`` or ``LOST``).
   An executor never touches the database.
3. Run each program, in whatever process or machine, with
   :func:`prefect_qiskit_runtime.server.runner.execute` (the ``JobSpec`` fields as a dict, and a
   ``send`` that receives the ``message``, ``result`` and ``error`` frames), so that programs see
   the same ``main(backend, user_messenger, **inputs)`` contract and backends everywhere.
4. Provide a factory ``(ServiceConfig) -> Executor``. The service calls
   ``ServiceConfig.executor_factory`` (:mod:`prefect_qiskit_runtime.server.config`) when it starts;
   ``None`` means :func:`prefect_qiskit_runtime.server.runtime.default_executor`, the local executor
   sized by ``workers``. From the command line, ``prefect-qiskit-runtime server start --executor
   MODULE:FACTORY`` imports ``MODULE`` and uses its ``FACTORY``.
"""
