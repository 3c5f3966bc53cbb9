"""sampler: the Qiskit Sampler primitive (V2) on the job's backend.

Inputs are primitive unified blocs (PUBs): a circuit, or ``[circuit, parameter_values, shots]``.
Circuits the backend cannot run as they are get transpiled for it; ISA circuits run as given
(``options.skip_transpilation`` true never transpiles, false or an explicit ``optimization_level``
always does). They are sampled with Aer's ``SamplerV2`` bound to the backend (its noise model
included), or ``BackendSamplerV2`` on other backends. The result is the primitive's
``PrimitiveResult``.

With ``serve`` instead of ``pubs``, the job answers calls ``{"pubs": [...]}`` over its channel,
each with its ``PrimitiveResult``, keeping every circuit it prepared for the next call
(``prefect_qiskit_runtime.server.backends.serving``).
"""

from qiskit import QuantumCircuit

from prefect_qiskit_runtime.server.backends import sampler_for, transpile_for
from prefect_qiskit_runtime.server.backends.serving import PubCache, serve_pubs


def normalize_pub(pub):
    """A PUB from JSON (lists instead of tuples) as the primitive expects it."""
    if isinstance(pub, QuantumCircuit):
        return (pub,)
    pub = tuple(pub)
    if len(pub) >= 2 and isinstance(pub[1], list):
        pub = (pub[0], _array(pub[1]), *pub[2:])
    return pub


def _array(values):
    import numpy as np

    return np.asarray(values, dtype=float)


def main(backend, user_messenger, pubs=None, options=None, serve=None, **kwargs):
    """Sample every PUB and return the ``PrimitiveResult`` (or serve calls, see above).

    Args:
        pubs: A list of PUBs (a lone circuit is accepted too).
        serve: ``true`` or ``{"idle_timeout": seconds}``: answer calls instead of ``pubs``.
        options: ``shots`` (default 1024), ``seed``, ``optimization_level`` (default 1; given,
            every circuit is transpiled at that level), ``skip_transpilation`` (default:
            transpile only circuits the backend cannot run as they are; true: never; false:
            always).
    """
    options = dict(options or {})
    options.update(kwargs)
    shots = int(options.get("shots") or options.get("default_shots") or 1024)
    seed = options.get("seed", options.get("seed_simulator"))
    skip = options.get("skip_transpilation")
    level = options.get("optimization_level")
    sampler = sampler_for(backend, shots, seed)
    if serve:

        def prepare(fixed):
            circuit = fixed[0]
            if not skip:
                circuit = transpile_for(circuit, backend, level, seed, always=skip is False)
            return (circuit,)

        cache = PubCache(1, prepare)
        return serve_pubs(user_messenger, serve, cache, sampler)
    if pubs is None:
        raise ValueError("the sampler needs pubs (or serve)")
    if isinstance(pubs, QuantumCircuit):
        pubs = [pubs]
    pubs = [normalize_pub(p) for p in pubs]
    if not skip:
        pubs = [
            (transpile_for(p[0], backend, level, seed, always=skip is False), *p[1:]) for p in pubs
        ]
    return sampler.run(pubs).result()
