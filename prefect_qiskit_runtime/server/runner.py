"""What runs inside a job's isolated process: load the program, call ``main``, report the outcome.

The warm parent (:mod:`prefect_qiskit_runtime.server.executors.warm`) forks one process per job,
which sets up its session, working directory, limits and log file, connects to the executor and
then calls :func:`execute` (:mod:`prefect_qiskit_runtime.server.executors.child`). Everything
here happens in that child: it is the only place where a program's own source is compiled and
executed.

The program contract (``spec/runtime-api.md`` §7): the source defines
``main(backend, user_messenger, **inputs)``;
``user_messenger.publish(message, encoder=RuntimeEncoder, final=False)`` streams an interim result,
``final=True`` sets the candidate final result (the last one wins); a non-``None`` return value of
``main`` counts as a last final publish; with neither, the result is ``null``. An extension:
``user_messenger.receive(timeout)`` takes the next call a client sent the running job
(:mod:`prefect_qiskit_runtime.server.calls`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect_qiskit_runtime.server.calls import Call, Inbox

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_MAX_RESULT_BYTES",
    "MessageTooLargeError",
    "UserMessenger",
    "configure_logging",
    "decode_inputs",
    "execute",
    "format_program_error",
    "load_program",
    "preload",
    "warm_up",
]

#: Largest interim message a program may publish (UTF-8 bytes of its JSON text).
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: Largest final result (UTF-8 bytes of its JSON text).
DEFAULT_MAX_RESULT_BYTES = 64 * 1024 * 1024
#: Input keys the old client's ``ParameterNamespace`` adds; never passed to ``main``.
NAMESPACE_PREFIX = "_ParameterNamespace__"
#: The module name programs run under (not ``__main__``: programs often test themselves there).
PROGRAM_MODULE = "runtime_program"
PROGRAM_FILE = "program.py"

Send = Callable[[dict[str, Any]], None]


class MessageTooLargeError(ValueError):
    """A published message or the final result is larger than the service accepts."""


class UserMessenger:
    """The ``user_messenger`` a program's ``main`` receives.

    Args:
        send: Writes one frame to the executor.
        max_message_bytes: Limit for interim messages.
        max_result_bytes: Limit for the final result.
        inbox: Where the calls of clients arrive; ``None`` where the executor relays none.
    """

    def __init__(
        self,
        send: Send,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        inbox: Inbox | None = None,
    ) -> None:
        self._send = send
        self._inbox = inbox
        self._max_message = max_message_bytes
        self._max_result = max_result_bytes
        self.final_result: str | None = None

    def publish(
        self, message: Any, encoder: type[json.JSONEncoder] | None = None, final: bool = False
    ) -> None:
        """Publish an interim result, or with ``final=True`` the candidate final result.

        Args:
            message: Anything the encoder can serialise.
            encoder: A ``json.JSONEncoder`` subclass; defaults to ``RuntimeEncoder``.
            final: Whether this is the (candidate) final result; the last one wins.

        Raises:
            MessageTooLargeError: If the encoded message exceeds the service's limit.
            TypeError: If the encoder cannot serialise ``message``.
        """
        if encoder is None:
            from prefect_qiskit_runtime.core.codec import RuntimeEncoder

            encoder = RuntimeEncoder
        text = json.dumps(message, cls=encoder)
        limit = self._max_result if final else self._max_message
        size = len(text.encode("utf-8"))
        if size > limit:
            what = "final result" if final else "interim message"
            raise MessageTooLargeError(
                f"The {what} is {size} bytes of JSON, larger than the limit of {limit} bytes"
            )
        if final:
            self.final_result = text
        else:
            self._send({"t": "message", "data": text})

    def receive(self, timeout: float | None = None) -> Call | None:
        """The next call a client sent this job over its channel (an extension of the contract).

        Args:
            timeout: Seconds to wait; ``None`` waits until a call comes or the channel ends.

        Returns:
            The call (answer it with ``reply`` or ``fail``), or ``None`` when a client ended the
            channel, the wait timed out, or the executor relays no calls (Ray).

        Example:
            >>> while (call := user_messenger.receive(timeout=300)) is not None:  # doctest: +SKIP
            ...     call.reply(compute(call.value))
        """
        if self._inbox is None:
            return None
        return self._inbox.receive(timeout)


def decode_inputs(params_json: str) -> dict[str, Any]:
    """Decode a job's ``params`` into the keyword arguments of ``main``.

    Accepts what the old client may send (spec §3.3): an object, a one-element list holding one, or
    a JSON string of one. The ``_ParameterNamespace__*`` keys are dropped.

    Raises:
        ValueError: If ``params`` is not an object.
    """
    from prefect_qiskit_runtime.core.codec import RuntimeDecoder

    params: Any = json.loads(params_json, cls=RuntimeDecoder) if params_json else {}
    if isinstance(params, str):
        params = json.loads(params, cls=RuntimeDecoder)
    if isinstance(params, list) and len(params) == 1:
        params = params[0]
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ValueError(f"Job params must be a JSON object, not {type(params).__name__}")
    return {k: v for k, v in params.items() if not str(k).startswith(NAMESPACE_PREFIX)}


def load_program(source: str, filename: str) -> types.ModuleType:
    """Compile and execute a program's source as module ``runtime_program``.

    Only ever called inside a job's isolated process.

    Args:
        source: The program source.
        filename: The file name tracebacks show (the file should hold ``source``).

    Returns:
        The module; its ``main`` is the entry point.
    """
    from prefect_qiskit_runtime.server import legacy_imports

    # Programs written for the original clients import their names from those clients' modules.
    legacy_imports.install()
    module = types.ModuleType(PROGRAM_MODULE)
    module.__file__ = filename
    # Registered so that dataclasses, pickle-by-reference and typing resolve the module.
    sys.modules[PROGRAM_MODULE] = module
    code = compile(source, filename, "exec", dont_inherit=True)
    exec(code, module.__dict__)  # the program's own source, in its own process (see module doc)
    return module


def format_program_error(exc: BaseException, program_file: str) -> str:
    """Format an exception as the traceback a program author wants to read.

    Frames of the runner itself are dropped: the traceback starts at the first frame of the program
    file, or shows only the exception when the program was never entered (for example ``main`` got
    an unexpected keyword argument).

    Returns:
        The traceback text, ending with ``ExceptionName: message``.
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != program_file:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def configure_logging(level: str | None) -> None:
    """Send Python logging at ``level`` (default WARNING) and above to ``sys.stderr``.

    Args:
        level: ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` or ``CRITICAL``, any case.
    """
    name = (level or "WARNING").upper()
    if name not in _LEVELS:
        name = "WARNING"
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(name)


def execute(spec: dict[str, Any], send: Send, inbox: Inbox | None = None) -> bool:
    """Run one job's program and report its outcome through ``send``.

    Expects the process to be set up already (working directory, log file on fds 1 and 2, limits)
    and the ``hello``/``started`` frames sent.

    Args:
        spec: ``program_source``, ``params_json``, ``backend_name``, ``log_level``, ``workdir`` and
            optionally ``max_message_bytes``/``max_result_bytes``.
        send: Writes one frame to the executor.
        inbox: The calls clients send the job, if the executor relays them.

    Returns:
        True if the program completed, False if it failed (the ``error`` frame was sent).
    """
    configure_logging(spec.get("log_level"))
    worker = spec.get("worker")
    if worker:
        # At DEBUG only: which process ran the job (a session's jobs share one).
        logging.getLogger("prefect_qiskit_runtime.worker").debug(
            "process %s, session %s, job %s of this process",
            worker.get("pid"),
            worker.get("session"),
            worker.get("job"),
        )
    program_file = str(Path(spec["workdir"]) / PROGRAM_FILE)
    messenger = UserMessenger(
        send,
        spec.get("max_message_bytes") or DEFAULT_MAX_MESSAGE_BYTES,
        spec.get("max_result_bytes") or DEFAULT_MAX_RESULT_BYTES,
        inbox,
    )
    try:
        Path(program_file).write_text(spec["program_source"], encoding="utf-8")
        inputs = decode_inputs(spec["params_json"])
        from prefect_qiskit_runtime.server.backends import build_backend

        backend = build_backend(spec["backend_name"], cached=True)
        module = load_program(spec["program_source"], program_file)
        main = getattr(module, "main", None)
        if not callable(main):
            raise AttributeError(
                "The program does not define main(backend, user_messenger, **kwargs)"
            )
        returned = main(backend, messenger, **inputs)
        if returned is not None:
            messenger.publish(returned, final=True)
    except BaseException as exc:
        _flush_std_streams()
        send(
            {
                "t": "error",
                "traceback": format_program_error(exc, program_file),
                "exc_type": type(exc).__name__,
            }
        )
        return False
    _flush_std_streams()
    send({"t": "result", "data": messenger.final_result or "null"})
    return True


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        # A program may have closed or replaced them.
        with contextlib.suppress(Exception):
            stream.flush()


def preload() -> None:
    """Import and build what programs need, once, in the warm parent before it forks jobs.

    Nothing here may start threads that a forked child would need (OpenMP or rayon pools): only
    imports, backend objects and pass-manager construction (which loads the transpiler plugins).
    """
    import numpy  # noqa: F401
    import qiskit
    import qiskit.circuit.library
    import qiskit.primitives
    import qiskit.qpy
    import qiskit.quantum_info  # noqa: F401
    import qiskit_aer
    import qiskit_aer.primitives  # noqa: F401
    import scipy.optimize  # noqa: F401

    from prefect_qiskit_runtime.core.codec import RuntimeDecoder, RuntimeEncoder
    from prefect_qiskit_runtime.server import backends

    backends.warm_up()
    json.loads(json.dumps({"z": 1j}, cls=RuntimeEncoder), cls=RuntimeDecoder)


#: The backend a spare warms up on: the default one of the clients.
WARM_UP_BACKEND = "aer_simulator"


def warm_up(interrupted: Callable[[], bool]) -> None:
    """Exercise what a typical job runs, in a spare process before it is given a job.

    A freshly forked process pays a copy-on-write fault for every page of the warm parent it
    writes to and starts Aer's threads afresh: an estimator job runs in about 18-20 ms there and in
    about 6 ms in a process that has run one estimate before. A spare therefore runs a 1-qubit
    circuit through the codec, the ISA check and Aer's ``EstimatorV2`` once (about 16 ms of CPU),
    as an estimator job on the default backend does. Left out on purpose: the transpiler (an ISA
    circuit, what a loop sends, is not transpiled; pre-faulting the transpiler cost 3 ms a spare),
    and the sampler (warming it cost every spare another 8-10 ms of CPU and saved a sampler job only
    1-3 ms, since it shares most of its first-use costs with the estimator; a hybrid loop on 2 cores
    went from 42 to 38 ms per iteration without it). No user
    code is involved, so the spare is as isolated as a fresh fork. The warm parent does not hand a
    job to a spare in the middle of its warm-up; should one arrive anyway (it took the spare for
    idle just before the warm-up began), the warm-up stops before its next step. Any failure is
    ignored (the job then just runs colder).

    Args:
        interrupted: Called between steps; True stops the warm-up.
    """
    import gc

    state: dict[str, Any] = {}
    for step in (_warm_inputs, _warm_estimator):
        if interrupted():
            return
        try:
            step(state)
        except Exception:  # a warm-up must never break the process that runs jobs
            return
    # Collect the warm-up's garbage now rather than in the job's first collection.
    gc.collect()


def _warm_inputs(state: dict[str, Any]) -> None:
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter

    from prefect_qiskit_runtime.core.codec import RuntimeEncoder
    from prefect_qiskit_runtime.server.backends import build_backend, transpile_for

    backend = build_backend(WARM_UP_BACKEND, cached=True)
    theta = Parameter("theta")
    circuit = QuantumCircuit(1)
    circuit.ry(theta, 0)
    # The inputs travel as a job's params do: QPY inside RuntimeEncoder JSON.
    text = json.dumps({"pubs": [[circuit, {"Z": 1.0}, [0.5]]]}, cls=RuntimeEncoder)
    circuit = decode_inputs(text)["pubs"][0][0]
    state["backend"] = backend
    # As the estimator and sampler programs do: this circuit runs as it is on the warm-up backend,
    # so the transpiler is left alone, as it is by jobs that send ISA circuits.
    state["circuit"] = transpile_for(circuit, backend)


def _warm_estimator(state: dict[str, Any]) -> None:
    import numpy as np
    from qiskit.primitives.containers import ObservablesArray
    from qiskit.quantum_info import SparsePauliOp

    from prefect_qiskit_runtime.core.codec import RuntimeEncoder
    from prefect_qiskit_runtime.server.backends import estimator_for

    circuit = state["circuit"]
    observables = ObservablesArray.coerce(SparsePauliOp("Z"))
    if circuit.layout is not None:
        observables = observables.apply_layout(circuit.layout)
    estimator = estimator_for(state["backend"])  # as the estimator program builds it
    result = estimator.run([(circuit, observables, np.asarray([0.5]))]).result()
    json.dumps(result, cls=RuntimeEncoder)
