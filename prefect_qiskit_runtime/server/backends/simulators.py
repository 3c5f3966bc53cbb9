"""Qiskit backend objects for the catalogue's entries: ideal simulators and noisy fake devices.

Imported only where jobs run (a job's process, or the warm parent that forks it): building a
backend imports Qiskit and Aer. A noisy device is a
:class:`~qiskit.providers.fake_provider.GenericBackendV2` generated with the entry's seed on the
entry's coupling map; Aer simulates it with the noise model built from its properties
(``AerSimulator.from_backend``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect_qiskit_runtime.server.backends.catalogue import BackendInfo, info, names
from prefect_qiskit_runtime.server.backends.primitives import preset_pass_manager

if TYPE_CHECKING:
    from qiskit.providers import BackendV2

__all__ = ["build_backend", "warm_up"]

_BUILT: dict[str, BackendV2] = {}


def build_backend(name: str, *, cached: bool = False) -> BackendV2:
    """Build the Qiskit backend object of ``name`` (imports Qiskit and Aer).

    The object is a BackendV2 with a ``Target``: ``transpile(qc, backend)`` and
    ``backend.run(qc, shots=...).result()`` work, and ``run`` also accepts the ``timeout`` argument
    the original ``ProgramBackend.run`` had.

    Args:
        name: A name from :func:`names`.
        cached: Return one shared instance per name. The warm parent builds every backend once with
            ``cached=True`` so that each forked job gets its own copy-on-write copy for free; do not
            share cached instances between programs in one process (``set_options`` would leak).

    Returns:
        The backend; its ``name`` is ``name``.

    Raises:
        KeyError: If there is no such backend.

    Example:
        >>> backend = build_backend("fake_5q_device")  # doctest: +SKIP
        >>> backend.num_qubits
        5
    """
    b = info(name)
    if cached and name in _BUILT:
        return _BUILT[name]
    backend = _build(b)
    if cached:
        _BUILT[name] = backend
    return backend


def warm_up() -> None:
    """Build and cache every backend and its level-1 pass manager (in the warm parent)."""
    for name in names():
        backend = build_backend(name, cached=True)
        preset_pass_manager(1, backend)


def _build(b: BackendInfo) -> BackendV2:
    if b.name == "basic_simulator":
        return _basic_simulator_class()()
    sim = _noisy_device_simulator(b) if b.noisy else _aer_simulator_class()()
    sim.name = b.name
    return sim


def _noisy_device_simulator(b: BackendInfo) -> Any:
    """Aer with the noise model of a device generated from the entry's seed and coupling map."""
    from qiskit.providers.fake_provider import GenericBackendV2

    assert b.edges is not None
    # This edge order, not the sorted coupling_map: the seeded properties follow the edge order.
    coupling = [[x, y] for x, y in b.edges] + [[y, x] for x, y in b.edges]
    device = GenericBackendV2(
        b.num_qubits, basis_gates=list(b.basis_gates), coupling_map=coupling, seed=b.seed
    )
    device.name = b.name
    device.backend_version = b.backend_version
    sim = _aer_simulator_class().from_backend(device)
    sim.description = b.description
    return sim


_CLASSES: dict[str, Any] = {}


def _aer_simulator_class() -> Any:
    """AerSimulator whose ``run`` accepts (and ignores) ``timeout`` like the old ProgramBackend."""
    if "aer" not in _CLASSES:
        from qiskit_aer import AerSimulator

        class ProgramAerSimulator(AerSimulator):  # type: ignore[misc]
            """An :class:`~qiskit_aer.AerSimulator` with the old ``run(circuits, timeout=None)``."""

            def run(self, run_input: Any, timeout: float | None = None, **options: Any) -> Any:
                return super().run(run_input, **options)

            @property
            def target(self) -> Any:
                # AerSimulator rebuilds its Target on every access (≈1 ms, and transpile reads it
                # ~150 times); rebuild only when an option that shapes it has changed.
                if self._from_backend:
                    return self._target
                key = repr(
                    (
                        self._options_configuration,
                        self._options_properties,
                        getattr(self, "_cached_basis_gates", None),
                    )
                )
                cached = self.__dict__.get("_program_target")
                if cached is None or cached[0] != key:
                    cached = (key, super().target)
                    self.__dict__["_program_target"] = cached
                return cached[1]

        _CLASSES["aer"] = ProgramAerSimulator
    return _CLASSES["aer"]


def _basic_simulator_class() -> Any:
    """BasicSimulator whose ``run`` accepts (and ignores) ``timeout`` like the old
    ProgramBackend."""
    if "basic" not in _CLASSES:
        from qiskit.providers.basic_provider import BasicSimulator

        class ProgramBasicSimulator(BasicSimulator):  # type: ignore[misc]
            """A :class:`BasicSimulator` with the old ``run(circuits, timeout=None)``."""

            def run(self, run_input: Any, timeout: float | None = None, **options: Any) -> Any:
                return super().run(run_input, **options)

        _CLASSES["basic"] = ProgramBasicSimulator
    return _CLASSES["basic"]
