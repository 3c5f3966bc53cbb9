"""The catalogue of local backends, the Qiskit objects behind them and the primitives programs use.

The service process asks this package for names, qubit counts and the configuration documents it
serves to the old client (``spec/runtime-api.md`` §2), all from static data: importing it does
not import Qiskit. Only :func:`build_backend` and the primitive factories, called inside a job's
process (or the warm parent that forks it), import Qiskit and Aer.

Backends:

- ``aer_simulator``: an ideal :class:`qiskit_aer.AerSimulator`.
- ``ibmq_qasm_simulator``: the same, under the name the original documentation uses.
- ``basic_simulator``: Qiskit's pure-Python ``BasicSimulator``.
- ``fake_5q_device`` / ``fake_27q_device``: noisy devices. Their properties (error rates, T1/T2,
  durations) come from :class:`~qiskit.providers.fake_provider.GenericBackendV2` with a fixed seed
  on a real device's coupling map (a 5-qubit T and the 27-qubit heavy-hex Falcon lattice); Aer
  simulates them with the noise model built from those properties (``AerSimulator.from_backend``).

Modules:

- :mod:`.catalogue`: :class:`BackendInfo` entries and the configuration documents (no Qiskit);
- :mod:`.simulators`: :func:`build_backend` (ideal simulators and noisy devices) and the warm
  parent's :func:`warm_up`;
- :mod:`.primitives`: :func:`preset_pass_manager`, :func:`transpile_for`, :func:`estimator_for`,
  :func:`sampler_for`.

Adding a backend:

1. Add a :class:`BackendInfo` to ``_CATALOGUE`` in :mod:`.catalogue`: its name, qubit count, a
   one-line description, the basis gates of its configuration document, and for a device its
   undirected coupling ``edges``, ``noisy=True`` and a ``seed`` (the generated properties depend
   on it, so keep it fixed once published). ``alias_of`` marks another name for an existing one.
   That alone makes it listed by ``/backends`` and accepted as a job's backend.
2. If it is neither an Aer simulator (ideal, or noisy from a generated device) nor
   ``basic_simulator``, teach ``_build`` in :mod:`.simulators` to make its object: a
   ``BackendV2`` with a ``Target`` whose ``run`` also accepts ``timeout`` (see the
   ``Program*Simulator`` classes there). :func:`estimator_for` and :func:`sampler_for` pick Aer's
   primitives for any ``AerSimulator`` and Qiskit's backend primitives otherwise.
3. Every backend is built once in the warm parent (:func:`warm_up`), so it must build quickly and
   without network access; ``tests/server/test_server_exec_programs.py`` runs a Bell circuit on
   every name.
"""

from __future__ import annotations

from prefect_qiskit_runtime.server.backends.catalogue import (
    BackendInfo,
    configuration,
    info,
    list_configurations,
    names,
    num_qubits,
)
from prefect_qiskit_runtime.server.backends.primitives import (
    _PASS_MANAGERS as _PASS_MANAGERS,  # read by a test: the jobs get the warm parent's managers
)
from prefect_qiskit_runtime.server.backends.primitives import (
    SHOTS_PRECISION,
    estimator_for,
    needs_transpilation,
    preset_pass_manager,
    sampler_for,
    transpile_for,
)
from prefect_qiskit_runtime.server.backends.simulators import build_backend, warm_up

__all__ = [
    "SHOTS_PRECISION",
    "BackendInfo",
    "build_backend",
    "configuration",
    "estimator_for",
    "info",
    "list_configurations",
    "names",
    "needs_transpilation",
    "num_qubits",
    "preset_pass_manager",
    "sampler_for",
    "transpile_for",
    "warm_up",
]
