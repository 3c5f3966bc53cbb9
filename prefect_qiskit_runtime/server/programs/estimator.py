"""estimator: the Qiskit Estimator primitive (V2) on the job's backend.

Inputs are primitive unified blocs (PUBs): ``[circuit, observables, parameter_values, precision]``,
where observables are a Pauli dict (``{"ZZ": 1.0}``), a Pauli label, a ``SparsePauliOp``, or
(nested) lists of these. Circuits the backend cannot run as they are get transpiled for it and
their observables mapped through the layout; ISA circuits (a loop's ansatz transpiled once) run
as given. ``options.skip_transpilation`` true never transpiles, false (or an explicit
``optimization_level``) always does. Aer's ``EstimatorV2`` bound to the backend
computes the expectation values (its noise model included), ``BackendEstimatorV2`` on other
backends. The result is the primitive's ``PrimitiveResult``.

With ``serve`` instead of ``pubs``, the job answers calls ``{"pubs": [...]}`` over its channel,
each with its ``PrimitiveResult``, keeping every circuit it prepared for the next call
(``prefect_qiskit_runtime.server.backends.serving``).
"""

import numpy as np
from qiskit.primitives.containers import ObservablesArray
from qiskit.quantum_info import SparsePauliOp

from prefect_qiskit_runtime.server.backends import estimator_for, transpile_for
from prefect_qiskit_runtime.server.backends.serving import PubCache, serve_pubs


def coerce_observables(observables):
    """Observables from JSON: lists of label/coefficient pairs become SparsePauliOps."""
    if (
        isinstance(observables, list)
        and observables
        and all(
            isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
            for item in observables
        )
    ):
        return SparsePauliOp.from_list([(label, coeff) for label, coeff in observables])
    return observables


def normalize_pub(pub, backend=None, optimization_level=None, seed=None, always=False):
    """Coerce a PUB from JSON; with ``backend``, make its circuit runnable there.

    A circuit that gets transpiled takes its observables along through the layout; one the
    backend can run as it is stays as it is (see ``transpile_for``).
    """
    circuit, observables, *rest = tuple(pub)
    if rest and isinstance(rest[0], list):
        rest[0] = np.asarray(rest[0], dtype=float)
    observables = ObservablesArray.coerce(coerce_observables(observables))
    if backend is not None:
        isa = transpile_for(circuit, backend, optimization_level, seed, always=always)
        if isa is not circuit:
            circuit = isa
            observables = observables.apply_layout(circuit.layout)
    return (circuit, observables, *rest)


def main(backend, user_messenger, pubs=None, options=None, serve=None, **kwargs):
    """Estimate every PUB and return the ``PrimitiveResult`` (or serve calls, see above).

    Args:
        pubs: A list of PUBs.
        serve: ``true`` or ``{"idle_timeout": seconds}``: answer calls instead of ``pubs``.
        options: ``precision`` (default 0: exact on Aer), ``seed``, ``optimization_level``
            (default 1; given, every circuit is transpiled at that level),
            ``skip_transpilation`` (default: transpile only circuits the backend cannot run as
            they are; true: never; false: always).
    """
    options = dict(options or {})
    options.update(kwargs)
    precision = options.get("precision", options.get("default_precision"))
    seed = options.get("seed", options.get("seed_simulator"))
    skip = options.get("skip_transpilation")
    level = options.get("optimization_level")
    target = None if skip else backend
    estimator = estimator_for(backend, precision, seed)
    if serve:
        cache = PubCache(2, lambda fixed: normalize_pub(fixed, target, level, seed, skip is False))
        return serve_pubs(user_messenger, serve, cache, estimator)
    if pubs is None:
        raise ValueError("the estimator needs pubs (or serve)")
    pubs = [normalize_pub(p, target, level, seed, always=skip is False) for p in pubs]
    return estimator.run(pubs).result()
