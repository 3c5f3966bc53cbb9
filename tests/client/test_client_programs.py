"""RuntimeService program methods against the real service: upload (every metadata form), list,
get, update, visibility, delete, and their error paths."""

from __future__ import annotations

import json
from collections import namedtuple
from pathlib import Path

import pytest
from client_support import DOUBLER, unique

from prefect_qiskit_runtime.client import ParameterNamespace, RuntimeService
from prefect_qiskit_runtime.core.exceptions import (
    IBMQInputValueError,
    IBMQNotAuthorizedError,
    RuntimeDuplicateProgramError,
    RuntimeProgramNotFound,
)
from prefect_qiskit_runtime.core.models import ProgramParameter, ProgramResult


def test_upload_flat_metadata_dict_becomes_json_schema(alice: RuntimeService) -> None:
    name = unique("flat")
    metadata = {
        "name": name,
        "description": "flat form",
        "max_execution_time": 300,
        "parameters": [
            {"name": "x", "description": "the number", "type": "int", "required": True},
            {"name": "label", "description": "a label", "type": "str", "required": False},
        ],
        "return_values": [{"name": "y", "description": "twice x", "type": "int"}],
    }
    program_id = alice.upload_program(DOUBLER, metadata=metadata)
    program = alice.program(program_id, refresh=True)
    assert program.name == name
    assert program.max_execution_time == 300
    params = program.parameters()
    assert params.metadata["required"] == ["x"]
    assert params.metadata["properties"]["x"]["type"] == "integer"
    assert program.return_values["properties"]["y"]["description"] == "twice x"
    with pytest.raises(IBMQInputValueError, match=r"Param \(x\) missing required value!"):
        params.validate()
    params.x = 4
    params.validate()
    result = alice.run(program_id, {"backend_name": "aer_simulator"}, params).result()
    assert result == 8


def test_upload_spec_form_from_json_file_and_arguments_win(
    alice: RuntimeService, tmp_path: Path
) -> None:
    spec = {
        "backend_requirements": {"min_num_qubits": 1},
        "parameters": {
            "type": "object",
            "properties": {"x": {"type": "integer", "description": "n"}},
            "required": ["x"],
        },
        "interim_results": {"type": "object", "properties": {"i": {"type": "integer"}}},
    }
    meta_file = tmp_path / "meta.json"
    meta_file.write_text(
        json.dumps(
            {"name": "ignored", "description": "from file", "max_execution_time": 60, "spec": spec}
        )
    )
    source = tmp_path / "program.py"
    source.write_text(DOUBLER)
    name = unique("specform")
    program_id = alice.upload_program(
        str(source), metadata=str(meta_file), name=name, max_execution_time=3000, is_public=True
    )
    program = alice.program(program_id, refresh=True)
    assert (program.name, program.description) == (name, "from file")
    assert program.max_execution_time == 3000
    assert program.is_public is True
    assert program.backend_requirements == spec["backend_requirements"]
    assert program.parameters().metadata == spec["parameters"]
    assert program.interim_results == spec["interim_results"]
    assert program.data == DOUBLER
    assert program.creation_date and program.update_date


def test_upload_parameter_objects_and_original_namedtuples(alice: RuntimeService) -> None:
    Legacy = namedtuple("Legacy", "name description type required")
    program_id = alice.upload_program(
        DOUBLER,
        name=unique("objects"),
        description="parameter objects",
        max_execution_time=60,
        parameters=[
            ProgramParameter("x", "n", "int", True),
            Legacy("c", "circ", "QuantumCircuit", False),
        ],
        return_values=[ProgramResult("y", "twice", "int")],
        interim_results=[],
    )
    schema = alice.program(program_id).parameters().metadata
    assert schema["required"] == ["x"]
    assert set(schema["properties"]) == {"x", "c"}
    assert alice.program(program_id).return_values["properties"]["y"]["type"] == "integer"


def test_upload_requires_name_description_and_time(alice: RuntimeService) -> None:
    with pytest.raises(IBMQInputValueError, match="name"):
        alice.upload_program(DOUBLER, description="d", max_execution_time=60)
    with pytest.raises(IBMQInputValueError, match="description"):
        alice.upload_program(DOUBLER, name=unique("nodesc"), max_execution_time=60)
    with pytest.raises(IBMQInputValueError, match="max_execution_time"):
        alice.upload_program(DOUBLER, name=unique("notime"), description="d")
    with pytest.raises(IBMQInputValueError, match="readable file"):
        alice.upload_program(
            "/no/such/file.py", name=unique("nofile"), description="d", max_execution_time=60
        )


def test_duplicate_name_and_forbidden_upload(alice: RuntimeService, bob: RuntimeService) -> None:
    name = unique("dup")
    alice.upload_program(DOUBLER, name=name, description="d", max_execution_time=60)
    with pytest.raises(RuntimeDuplicateProgramError) as dup:
        alice.upload_program(DOUBLER, name=name, description="d", max_execution_time=60)
    assert dup.value.status_code == 409
    with pytest.raises(IBMQNotAuthorizedError) as forbidden:
        bob.upload_program(DOUBLER, name=unique("bob"), description="d", max_execution_time=60)
    assert forbidden.value.status_code == 403


def test_upload_with_same_idempotency_key_creates_one_program(alice: RuntimeService) -> None:
    key = unique("upload-key")
    name = unique("idem")
    first = alice.upload_program(
        DOUBLER, name=name, description="d", max_execution_time=60, idempotency_key=key
    )
    again = alice.upload_program(
        DOUBLER, name=name, description="d", max_execution_time=60, idempotency_key=key
    )
    assert first == again
    assert [p.program_id for p in alice.programs(refresh=True) if p.name == name] == [first]


def test_programs_listing_pagination_cache_and_pprint(
    alice: RuntimeService, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [
        alice.upload_program(DOUBLER, name=unique("list"), description="d", max_execution_time=60)
        for _ in range(3)
    ]
    everything = alice.programs(refresh=True)
    listed = [p.program_id for p in everything]
    assert len(listed) == len(set(listed))
    assert set(ids) <= set(listed)
    assert "hello-world" in listed  # public built-in programs are listed for everyone
    # Oldest first and stable: the three newest uploads are the tail of the list.
    assert listed[-3:] == ids
    assert [p.program_id for p in alice.programs(limit=2, skip=len(listed) - 2)] == ids[1:]
    assert everything[-3].data == DOUBLER  # listed without source; fetched for its author
    assert len(alice.programs(limit=None)) == len(listed)
    # An upload through this client invalidates its cached list.
    late = alice.upload_program(
        DOUBLER, name=unique("late"), description="d", max_execution_time=60
    )
    assert alice.programs()[-1].program_id == late
    alice.pprint_programs(limit=1, skip=len(listed))
    out = capsys.readouterr().out
    assert out.startswith("=" * 50)
    assert f"{late}:" in out
    assert "  Max execution time: 60" in out
    assert "  Input parameters:\n    none" in out


def test_program_str_shows_schema_like_the_original(alice: RuntimeService) -> None:
    text = str(alice.program("hello-world", refresh=True))
    lines = text.splitlines()
    assert lines[0] == "hello-world:"
    assert lines[1] == "  Name: hello-world"
    assert "  Input parameters:" in lines
    assert any(line.strip() == "- iterations:" for line in lines)
    assert "Properties:" in text and "Required: " in text


def test_program_not_found_and_data_only_for_author(
    alice: RuntimeService, bob: RuntimeService
) -> None:
    with pytest.raises(RuntimeProgramNotFound) as missing:
        alice.program("no-such-program", refresh=True)
    assert missing.value.status_code == 404
    public = alice.upload_program(
        DOUBLER, name=unique("public"), description="d", max_execution_time=60, is_public=True
    )
    assert bob.program(public).name.startswith("public-")
    with pytest.raises(IBMQNotAuthorizedError):
        _ = bob.program(public).data
    private = alice.upload_program(
        DOUBLER, name=unique("private"), description="d", max_execution_time=60
    )
    with pytest.raises(RuntimeProgramNotFound):
        bob.program(private)


def test_update_program_data_and_metadata(
    alice: RuntimeService, caplog: pytest.LogCaptureFixture
) -> None:
    program_id = alice.upload_program(
        DOUBLER,
        name=unique("upd"),
        description="before",
        max_execution_time=60,
        parameters={"type": "object", "properties": {"x": {"type": "integer"}}},
        return_values={"type": "integer"},
    )
    tripler = DOUBLER.replace("* 2", "* 3")
    new_name = unique("updated")
    alice.update_program(
        program_id,
        data=tripler,
        metadata={"description": "from metadata", "max_execution_time": 90},
        name=new_name,
        spec={"parameters": {"type": "object", "properties": {"x": {"type": "number"}}}},
    )
    program = alice.program(program_id, refresh=True)
    assert program.data == tripler
    assert (program.name, program.description, program.max_execution_time) == (
        new_name,
        "from metadata",
        90,
    )
    assert program.parameters().metadata["properties"]["x"]["type"] == "number"
    assert program.return_values == {"type": "integer"}  # spec keys not given are kept
    assert alice.run(program_id, {"backend_name": "aer_simulator"}, {"x": 5}).result() == 15
    with caplog.at_level("WARNING"):
        alice.update_program(program_id)
    assert "nothing to do" in caplog.text
    with pytest.raises(RuntimeProgramNotFound):
        alice.update_program("no-such-program", description="x")
    with pytest.raises(RuntimeProgramNotFound):
        alice.update_program("no-such-program", data=DOUBLER)


def test_visibility_and_delete(alice: RuntimeService, bob: RuntimeService) -> None:
    program_id = alice.upload_program(
        DOUBLER, name=unique("vis"), description="d", max_execution_time=60
    )
    alice.set_program_visibility(program_id, True)
    assert alice.program(program_id, refresh=True).is_public is True
    assert bob.program(program_id, refresh=True).program_id == program_id
    alice.set_program_visibility(program_id, False)
    assert alice.program(program_id, refresh=True).is_public is False
    with pytest.raises(RuntimeProgramNotFound):
        bob.program(program_id, refresh=True)
    with pytest.raises(RuntimeProgramNotFound):
        alice.set_program_visibility("no-such-program", True)
    alice.delete_program(program_id)
    with pytest.raises(RuntimeProgramNotFound):
        alice.program(program_id, refresh=True)
    with pytest.raises(RuntimeProgramNotFound):
        alice.delete_program(program_id)
    assert program_id not in [p.program_id for p in alice.programs(refresh=True)]


def test_parameter_namespace_str_and_inputs() -> None:
    ns = ParameterNamespace(
        {"properties": {"x": {"type": "integer", "description": "n"}}, "required": ["x"]}
    )
    ns.x = 2
    ns.extra = "allowed"
    assert ns.to_inputs() == {"x": 2, "extra": "allowed"}
    text = str(ns)
    assert text.startswith("ParameterNamespace (Values):")
    assert "| x " in text and "integer" in text and "True" in text
