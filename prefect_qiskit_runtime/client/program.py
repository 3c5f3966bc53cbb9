"""``RuntimeProgram`` (a program's metadata) and ``ParameterNamespace`` (its inputs)."""

from __future__ import annotations

import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from prefect_qiskit_runtime.core.exceptions import IBMQInputValueError, IBMQNotAuthorizedError


class RuntimeProgram:
    """The metadata of one runtime program, built from the service's program object.

    Args:
        program_name: The program's name.
        program_id: The program's id.
        description: What the program does.
        parameters: JSON Schema of the inputs.
        return_values: JSON Schema of the final result.
        interim_results: JSON Schema of the interim results.
        max_execution_time: Seconds a job may run before it is cancelled.
        backend_requirements: Requirements on the backend.
        creation_date: When the program was uploaded (as the service wrote it).
        update_date: When the program last changed.
        is_public: Whether every user may see and run it.
        data: The source, present only for the program's author.
        refresher: Fetches the program object again (used by :attr:`data`).

    Example:
        >>> p = RuntimeProgram.from_wire({"id": "p1", "name": "demo", "cost": 60})
        >>> p.program_id, p.max_execution_time
        ('p1', 60)
    """

    def __init__(
        self,
        program_name: str,
        program_id: str,
        description: str = "",
        parameters: dict[str, Any] | None = None,
        return_values: dict[str, Any] | None = None,
        interim_results: dict[str, Any] | None = None,
        max_execution_time: int = 0,
        backend_requirements: dict[str, Any] | None = None,
        creation_date: str = "",
        update_date: str = "",
        is_public: bool = False,
        data: str = "",
        refresher: Callable[[str], dict[str, Any]] | None = None,
    ) -> None:
        self._name = program_name
        self._id = program_id
        self._description = description
        self._parameters = parameters or {}
        self._return_values = return_values or {}
        self._interim_results = interim_results or {}
        self._max_execution_time = max_execution_time
        self._backend_requirements = backend_requirements or {}
        self._creation_date = creation_date
        self._update_date = update_date
        self._is_public = bool(is_public)
        self._data = data
        self._refresher = refresher

    @classmethod
    def from_wire(
        cls, obj: dict[str, Any], refresher: Callable[[str], dict[str, Any]] | None = None
    ) -> RuntimeProgram:
        """Build a program from the service's program object (spec §3.1).

        Args:
            obj: The JSON object of ``GET /programs/{id}`` or an item of ``GET /programs``.
            refresher: Fetches the object again by id.

        Returns:
            The program.
        """
        program = cls(program_name=obj["name"], program_id=obj["id"], refresher=refresher)
        program._update(obj)
        return program

    def _update(self, obj: dict[str, Any]) -> None:
        spec = obj.get("spec") or {}
        self._backend_requirements = spec.get("backend_requirements") or {}
        self._parameters = spec.get("parameters") or {}
        self._return_values = spec.get("return_values") or {}
        self._interim_results = spec.get("interim_results") or {}
        self._name = obj["name"]
        self._id = obj["id"]
        self._description = obj.get("description") or ""
        self._max_execution_time = int(obj.get("cost") or 0)
        self._creation_date = obj.get("creation_date") or ""
        self._update_date = obj.get("update_date") or ""
        self._is_public = bool(obj.get("is_public", False))
        self._data = obj.get("data") or ""

    def __repr__(self) -> str:
        return f"<RuntimeProgram {self._id!r} name={self._name!r}>"

    def __str__(self) -> str:
        def sentence_case(text: str) -> str:
            if not text:
                return text
            spaced = re.sub("([A-Z])", r" \1", text)
            return spaced[:1].upper() + spaced[1:].lower()

        def format_schema(schema: dict[str, Any]) -> None:
            if "description" in schema:
                lines.append(" " * 4 + f"Description: {schema['description']}")
            if "type" in schema:
                lines.append(" " * 4 + f"Type: {schema['type']}")
            if "properties" in schema:
                lines.append(" " * 4 + "Properties:")
                for name, prop in schema["properties"].items():
                    lines.append(" " * 8 + f"- {name}:")
                    for key, value in (prop or {}).items():
                        lines.append(" " * 12 + f"{sentence_case(key)}: {value}")
                    required = name in schema.get("required", [])
                    lines.append(" " * 12 + f"Required: {required}")

        lines = [
            f"{self.program_id}:",
            f"  Name: {self.name}",
            f"  Description: {self.description}",
            f"  Creation date: {self.creation_date}",
            f"  Update date: {self.update_date}",
            f"  Max execution time: {self.max_execution_time}",
        ]
        for title, schema in (
            ("Input parameters", self._parameters),
            ("Interim results", self._interim_results),
            ("Returns", self._return_values),
        ):
            lines.append(f"  {title}:")
            if schema:
                format_schema(schema)
            else:
                lines.append(" " * 4 + "none")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The metadata as a plain dictionary."""
        return {
            "program_id": self.program_id,
            "name": self.name,
            "description": self.description,
            "max_execution_time": self.max_execution_time,
            "backend_requirements": self.backend_requirements,
            "parameters": self._parameters,
            "return_values": self.return_values,
            "interim_results": self.interim_results,
            "is_public": self.is_public,
        }

    def parameters(self) -> ParameterNamespace:
        """A fresh namespace of the program's inputs, to fill in and pass to ``run``."""
        return ParameterNamespace(self._parameters)

    @property
    def program_id(self) -> str:
        """Program id."""
        return self._id

    @property
    def name(self) -> str:
        """Program name."""
        return self._name

    @property
    def description(self) -> str:
        """Program description."""
        return self._description

    @property
    def return_values(self) -> dict[str, Any]:
        """JSON Schema of the final result."""
        return self._return_values

    @property
    def interim_results(self) -> dict[str, Any]:
        """JSON Schema of the interim results."""
        return self._interim_results

    @property
    def max_execution_time(self) -> int:
        """Seconds a job may run before the service cancels it."""
        return self._max_execution_time

    @property
    def backend_requirements(self) -> dict[str, Any]:
        """Requirements on the backend."""
        return self._backend_requirements

    @property
    def creation_date(self) -> str:
        """When the program was uploaded."""
        return self._creation_date

    @property
    def update_date(self) -> str:
        """When the program last changed."""
        return self._update_date

    @property
    def is_public(self) -> bool:
        """Whether every user may see and run the program."""
        return self._is_public

    @property
    def data(self) -> str:
        """The program's source.

        Raises:
            IBMQNotAuthorizedError: If the caller is not the program's author.
        """
        if not self._data and self._refresher is not None:
            self._update(self._refresher(self._id))
        if not self._data:
            raise IBMQNotAuthorizedError(
                "Only program authors are authorized to retrieve program data"
            )
        return self._data


class ParameterNamespace(SimpleNamespace):
    """A program's inputs as attributes (``None`` until set), with a check of required ones.

    Args:
        parameters: The program's ``spec.parameters`` JSON Schema.

    Example:
        >>> ns = ParameterNamespace({"properties": {"x": {"type": "integer"}}, "required": ["x"]})
        >>> ns.x = 3
        >>> ns.validate()
    """

    def __init__(self, parameters: dict[str, Any]) -> None:
        super().__init__()
        self.__metadata = parameters
        self.__program_params: dict[str, Any] = {}
        for name, value in (parameters.get("properties") or {}).items():
            setattr(self, name, None)
            self.__program_params[name] = value

    @property
    def metadata(self) -> dict[str, Any]:
        """The parameters' JSON Schema."""
        return self.__metadata

    def to_inputs(self) -> dict[str, Any]:
        """The inputs to send: every attribute set, without the namespace's own bookkeeping.

        A declared parameter still ``None`` was never set and is left out, so the service applies
        its default instead of checking ``None`` against the parameter's type.
        """
        return {
            k: v
            for k, v in vars(self).items()
            if not k.startswith("_ParameterNamespace__")
            and not (v is None and k in self.__program_params)
        }

    def validate(self) -> None:
        """Check that every required input has a value (extra attributes are allowed).

        Raises:
            IBMQInputValueError: If a required input is ``None``.
        """
        for name in self.__program_params:
            if getattr(self, name, None) is None and name in self.metadata.get("required", []):
                raise IBMQInputValueError(f"Param ({name}) missing required value!")

    def __str__(self) -> str:
        header = "| {:10.10} | {:12.12} | {:12.12} | {:8.8} | {:>15} |".format(
            "Name", "Value", "Type", "Required", "Description"
        )
        rows = [
            "| {:10.10} | {:12.12} | {:12.12}| {:8.8} | {:>15} |".format(
                name,
                str(getattr(self, name, "None")),
                str(value.get("type", "None")),
                str(name in self.metadata.get("required", [])),
                str(value.get("description", "None")),
            )
            for name, value in self.__program_params.items()
        ]
        return "ParameterNamespace (Values):\n{}\n{}\n{}".format(
            header, "-" * len(header), "\n".join(rows)
        )


__all__ = ["ParameterNamespace", "RuntimeProgram"]
