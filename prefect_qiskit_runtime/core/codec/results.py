"""Decoders of a job's final result: :class:`ResultDecoder` and the ``circuit-runner`` result."""

from __future__ import annotations

import json
from datetime import date
from typing import TYPE_CHECKING, Any

from prefect_qiskit_runtime.core.codec.decoder import RuntimeDecoder

if TYPE_CHECKING:
    from qiskit.result import QuasiDistribution, Result


class ResultDecoder:
    """Decoder of a job's final result text, as in the original API.

    Subclass it and override :meth:`decode` for custom post-processing; pass the subclass as
    ``result_decoder`` to ``run`` or as ``decoder`` to ``RuntimeJob.result``.

    Example:
        >>> ResultDecoder.decode('{"__type__": "complex", "__value__": [0, 1]}')
        1j
        >>> ResultDecoder.decode("All done!")
        'All done!'
    """

    @classmethod
    def decode(cls, data: str) -> Any:
        """Decode result text with :class:`RuntimeDecoder`, or return it as is if it is not JSON.

        Args:
            data: The result text of the job.

        Returns:
            The decoded value, or ``data`` itself when it is not JSON.

        Raises:
            RuntimePayloadError: The text is JSON but holds a malformed or unsafe tagged value.
        """
        try:
            return json.loads(data, cls=RuntimeDecoder)
        except json.JSONDecodeError:
            return data


def runner_result_dict(result: Result) -> dict[str, Any]:
    """Return ``result`` as the bare dict the ``circuit-runner`` program must publish (spec §8).

    ``RunnerResult.decode`` of the old client is a plain ``json.loads`` + ``Result.from_dict`` of
    terra 0.46, which needs ``qobj_id`` (absent from many qiskit 2.x results) and cannot take a
    tagged ``date``; both are fixed here.

    Args:
        result: A qiskit ``Result``, e.g. from an Aer simulator run.

    Returns:
        A dict that plain ``json.dumps`` can encode when the result holds only counts, memory and
        quasi-probabilities.

    Example:
        >>> from qiskit.result import Result
        >>> runner_result_dict(Result(backend_name="b", backend_version="1", job_id="j",
        ...                           success=True, results=[]))["qobj_id"]
        ''
    """
    data = result.to_dict()
    data.setdefault("qobj_id", "")
    if isinstance(data.get("date"), date):
        data["date"] = data["date"].isoformat()
    return data


def _hex_to_bits(key: str, width: int) -> str:
    return bin(int(key, 16))[2:].zfill(width)


class _RunnerResultMethods(ResultDecoder):
    """The methods of :class:`RunnerResult`; kept apart so qiskit is imported only on first use."""

    @classmethod
    def decode(cls, data: str) -> Any:
        """Decode a ``circuit-runner`` result: plain ``json.loads`` then ``Result.from_dict``.

        Args:
            data: The result text, a bare ``Result.to_dict()`` JSON (spec §8).

        Returns:
            A :class:`RunnerResult`.
        """
        result_cls: Any = cls
        return result_cls.from_dict(json.loads(data))

    def get_quasiprobabilities(
        self, experiment: int | str | list[int | str] | None = None
    ) -> QuasiDistribution | list[QuasiDistribution]:
        """Return the quasi-probabilities of one or more experiments (measurement mitigation).

        As in the old client, each distribution is a ``QuasiDistribution`` built from bitstrings
        zero-padded to the length of ``header.final_measurement_mapping``, so
        ``binary_probabilities()`` has keys of exactly that width; ``shots`` is set.

        Args:
            experiment: Index or name of an experiment, a list of them, or ``None`` for all.

        Returns:
            One distribution when one experiment is selected, else a list.

        Raises:
            QiskitError: An experiment has no ``quasiprobabilities`` data or no
                ``final_measurement_mapping`` in its header.
        """
        from qiskit.exceptions import QiskitError
        from qiskit.result import QuasiDistribution

        this: Any = self
        if experiment is None:
            keys: list[Any] = list(range(len(this.results)))
        elif isinstance(experiment, list):
            keys = list(experiment)
        else:
            keys = [experiment]
        out: list[QuasiDistribution] = []
        for key in keys:
            exp = this._get_experiment(key)
            data = exp.data.to_dict() if hasattr(exp.data, "to_dict") else dict(exp.data)
            header = exp.header if exp.header is not None else {}
            mapping = (
                header.get("final_measurement_mapping")
                if isinstance(header, dict)
                else getattr(header, "final_measurement_mapping", None)
            )
            if "quasiprobabilities" not in data or mapping is None:
                raise QiskitError(f"No quasiprobabilities for experiment {key!r}")
            width = len(mapping)
            shots = exp.shots
            quasi = {_hex_to_bits(k, width): v for k, v in data["quasiprobabilities"].items()}
            dist = QuasiDistribution(quasi, shots=shots)
            dist.shots = shots
            out.append(dist)
        return out[0] if len(out) == 1 else out


if TYPE_CHECKING:

    class RunnerResult(Result, _RunnerResultMethods):
        """Result of the ``circuit-runner`` program (see :class:`_RunnerResultMethods`)."""


def build_runner_result(module: str) -> type:
    """Build the ``RunnerResult`` class (a subclass of qiskit's ``Result``).

    Args:
        module: The module the class says it lives in, where pickle will look it up.

    Returns:
        The class.
    """
    from qiskit.result import Result

    cls = type(
        "RunnerResult",
        (Result, _RunnerResultMethods),
        {
            "__module__": module,
            "__qualname__": "RunnerResult",
            "__doc__": (
                "Result of the ``circuit-runner`` program: a qiskit ``Result`` whose ``decode`` is "
                "``json.loads`` + ``Result.from_dict`` and which adds "
                "``get_quasiprobabilities``."
            ),
        },
    )
    return cls
