# mypy: ignore-errors
"""Programs through the old client: upload (dict and file), list/paginate, data, update, visibility,
delete, logout; a user without upload rights (checklist items 7-20, 42).

ARGS: url, carol, dave (tokens), uid (unique suffix), program_path (source file), workdir.
"""

import json
import os
from pathlib import Path

from oc_common import (
    ARGS,
    RESULTS,
    captured_stdout,
    check,
    connect,
    finish,
    raised,
    wait_streams,
)
from qiskit.providers.ibmq.runtime import RuntimeProgram

UID = ARGS["uid"]
SOURCE = Path(ARGS["program_path"]).read_text()
NEW_SOURCE = SOURCE + "\n# updated by the compatibility suite\n"

SPEC = {
    "backend_requirements": {"min_num_qubits": 2},
    "parameters": {
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "type": "object",
        "properties": {
            "iterations": {"type": "integer", "minimum": 0, "description": "How many."},
            "interval": {"type": "number", "description": "Seconds between results."},
        },
        "required": ["iterations"],
    },
    "return_values": {
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "description": "A summary.",
        "type": "object",
    },
    "interim_results": {
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "properties": {"iteration": {"type": "integer"}},
    },
}

provider = connect(ARGS["carol"])
runtime = provider.runtime
created = []


def describe(prog):
    return {
        "id": prog.program_id,
        "name": prog.name,
        "description": prog.description,
        "max_execution_time": prog.max_execution_time,
        "is_public": prog.is_public,
        "creation_date": prog.creation_date,
        "update_date": prog.update_date,
        "backend_requirements": prog.backend_requirements,
        "parameters": prog._parameters,
        "return_values": prog.return_values,
        "interim_results": prog.interim_results,
    }


with check("before") as r:
    before = runtime.programs(refresh=True, limit=None)
    r["count"] = len(before)
    r["names"] = [p.name for p in before]

with check("upload_dict") as r:
    # Spec form of the metadata, the source given as text (it contains "def main(").
    meta = {
        "name": f"compat-dict-{UID}",
        "description": "Uploaded with a metadata dict.",
        "max_execution_time": 300,
        "spec": SPEC,
    }
    pid_dict = runtime.upload_program(data=SOURCE, metadata=meta)
    created.append(pid_dict)
    r["id"] = pid_dict
    r["spec_sent"] = SPEC
    prog = runtime.program(pid_dict, refresh=True)
    r["program"] = describe(prog)
    r["str"] = str(prog)
    ns = prog.parameters()
    r["namespace_attrs"] = sorted(k for k in vars(ns) if not k.startswith("_"))
    r["namespace_validate_missing"] = raised(ns.validate)
    ns.iterations = 2
    r["namespace_validate_ok"] = raised(ns.validate)

with check("upload_file") as r:
    # Metadata as a JSON file and the source as a file path; old flat keys must be dropped silently.
    meta_path = os.path.join(ARGS["workdir"], f"meta-{UID}.json")
    with open(meta_path, "w") as fh:
        json.dump(
            {
                "name": f"compat-file-{UID}",
                "description": "Uploaded with a metadata file.",
                "max_execution_time": 3000,
                "is_public": True,
                "version": "1.0",
                "parameters": [{"name": "iterations", "type": "int", "required": True}],
                "spec": {"parameters": {"type": "object", "properties": {}}},
            },
            fh,
        )
    pid_file = runtime.upload_program(data=ARGS["program_path"], metadata=meta_path)
    created.append(pid_file)
    r["id"] = pid_file
    r["program"] = describe(runtime.program(pid_file, refresh=True))

with check("data_author") as r:
    r["equal"] = runtime.program(pid_dict, refresh=True).data == SOURCE
    r["file_equal"] = runtime.program(pid_file, refresh=True).data == SOURCE

with check("duplicate") as r:
    r["raised"] = raised(
        lambda: runtime.upload_program(
            data=SOURCE,
            metadata={"name": f"compat-dict-{UID}", "description": "d", "max_execution_time": 60},
        )
    )

with check("missing_metadata") as r:
    r["raised"] = raised(
        lambda: runtime.upload_program(data=SOURCE, metadata={"name": f"compat-nodesc-{UID}"})
    )

with check("unknown_program") as r:
    r["raised"] = raised(lambda: runtime.program("no-such-program-" + UID, refresh=True))

with check("many") as r:
    # 22 more programs: with the built-ins this is well over one page of 20.
    many = []
    for i in range(22):
        many.append(
            runtime.upload_program(
                data=SOURCE,
                metadata={
                    "name": f"compat-many-{UID}-{i:02d}",
                    "description": f"number {i}",
                    "max_execution_time": 60,
                },
            )
        )
    created.extend(many)
    listed = runtime.programs(refresh=True, limit=None)
    ids = [p.program_id for p in listed]
    r["count"] = len(listed)
    r["distinct"] = len(set(ids))
    r["expected"] = RESULTS["before"]["count"] + 2 + 22
    r["all_created_listed"] = all(pid in ids for pid in created)
    r["positions_of_last_three"] = [ids.index(pid) for pid in many[-3:]]
    r["default_limit"] = len(runtime.programs(refresh=True))
    r["skip_window"] = [
        p.program_id for p in runtime.programs(refresh=True, limit=2, skip=len(ids) - 2)
    ]
    r["last_two"] = many[-2:]
    r["limit_none_length"] = len(runtime.programs(limit=None))
    printed = captured_stdout(lambda: runtime.pprint_programs(refresh=True, limit=None))
    r["pprint_has_all"] = all(f"compat-many-{UID}-{i:02d}" in printed for i in range(22))
    r["pprint_has_builtins"] = [n for n in ("hello-world", "circuit-runner") if n in printed]
    r["pprint_head"] = printed[:400]
    r["pprint_default_lines"] = captured_stdout(lambda: runtime.pprint_programs()).count("=" * 50)
    r["is_runtime_program"] = all(isinstance(p, RuntimeProgram) for p in listed)

with check("update_data") as r:
    old = runtime.program(pid_dict, refresh=True)
    old_update = old.update_date
    runtime.update_program(pid_dict, data=NEW_SOURCE)
    prog = runtime.program(pid_dict, refresh=True)
    r["data_updated"] = prog.data == NEW_SOURCE
    r["old_update_date"] = old_update
    r["new_update_date"] = prog.update_date

with check("update_metadata") as r:
    new_spec = {"parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}}
    runtime.update_program(
        pid_dict,
        name=f"compat-renamed-{UID}",
        description="A new description.",
        max_execution_time=600,
        spec=new_spec,
    )
    r["program"] = describe(runtime.program(pid_dict, refresh=True))
    r["data_kept"] = runtime.program(pid_dict, refresh=True).data == NEW_SOURCE
    r["unknown"] = raised(lambda: runtime.update_program("no-such-program-" + UID, description="x"))

with check("visibility") as r:
    runtime.set_program_visibility(pid_dict, True)
    r["after_public"] = runtime.program(pid_dict, refresh=True).is_public
    runtime.set_program_visibility(pid_dict, False)
    r["after_private"] = runtime.program(pid_dict, refresh=True).is_public
    r["unknown"] = raised(lambda: runtime.set_program_visibility("no-such-program-" + UID, True))

# --- dave: may not upload, sees public programs without their data, never carol's private ones.
with check("dave") as r:
    provider_d = connect(ARGS["dave"])
    rt_d = provider_d.runtime
    r["upload"] = raised(
        lambda: rt_d.upload_program(
            data=SOURCE,
            metadata={"name": f"compat-dave-{UID}", "description": "d", "max_execution_time": 60},
        )
    )
    listed_d = [p.program_id for p in rt_d.programs(refresh=True, limit=None)]
    r["sees_public_file_program"] = pid_file in listed_d
    r["sees_private_dict_program"] = pid_dict in listed_d
    r["sees_builtin"] = any(p.name == "hello-world" for p in rt_d.programs(limit=None))
    r["public_data"] = raised(lambda: rt_d.program(pid_file, refresh=True).data)
    builtin = next(p for p in rt_d.programs(limit=None) if p.name == "hello-world")
    r["builtin_data"] = raised(lambda: rt_d.program(builtin.program_id, refresh=True).data)
    r["private_get"] = raised(lambda: rt_d.program(pid_dict, refresh=True))
    r["delete_other"] = raised(lambda: rt_d.delete_program(pid_file))
    r["update_other"] = raised(lambda: rt_d.update_program(pid_file, description="mine now"))
    r["visibility_other"] = raised(lambda: rt_d.set_program_visibility(pid_file, False))

provider = connect(ARGS["carol"])
runtime = provider.runtime

with check("after_dave") as r:
    prog = runtime.program(pid_file, refresh=True)
    r["still_public"] = prog.is_public
    r["description"] = prog.description

with check("logout") as r:
    runtime.logout()
    pid_after = runtime.upload_program(
        data=SOURCE,
        metadata={
            "name": f"compat-after-logout-{UID}",
            "description": "uploaded after logout",
            "max_execution_time": 60,
        },
    )
    created.append(pid_after)
    r["uploaded"] = bool(pid_after)
    r["get_after"] = runtime.program(pid_after, refresh=True).name

with check("delete") as r:
    runtime.delete_program(pid_dict)
    r["get_deleted"] = raised(lambda: runtime.program(pid_dict, refresh=True))
    r["delete_again"] = raised(lambda: runtime.delete_program(pid_dict))
    for pid in created:
        if pid != pid_dict:
            runtime.delete_program(pid)
    after = runtime.programs(refresh=True, limit=None)
    r["count_after_cleanup"] = len(after)
    r["count_before"] = RESULTS["before"]["count"]

# --- Programs written in the original clients' style run unchanged (issue 12 part 1).
import qiskit.providers.ibmq.runtime.program.program_template as template  # noqa: E402

MODERN_STYLE = """
from qiskit_ibm_runtime.program import UserMessenger, ProgramBackend
from qiskit_ibm_runtime import RuntimeEncoder


def main(backend: ProgramBackend, user_messenger: UserMessenger, **kwargs):
    user_messenger.publish({"backend": backend.name}, encoder=RuntimeEncoder)
    return {"qubits": backend.num_qubits, "messenger": type(user_messenger).__name__}
"""

with check("legacy_style") as r:
    streamed = {"template": [], "modern": []}
    jobs = {}
    for key, data in (("template", template.__file__), ("modern", MODERN_STYLE)):
        program_id = runtime.upload_program(
            data=data,
            metadata={
                "name": f"compat-{key}-style-{UID}",
                "description": "A program in the style of the original clients, unchanged.",
                "max_execution_time": 300,
            },
        )
        jobs[key] = runtime.run(
            program_id,
            options={"backend_name": "aer_simulator"},
            inputs={},
            callback=lambda job_id, value, key=key: streamed[key].append(value),
        )
    r["results"] = {key: job.result() for key, job in jobs.items()}
    # Streams are judged once their threads ended (the old client reconnects after the end).
    r["stream_errors"] = wait_streams(list(jobs.values()))
    r["interim"] = streamed
    r["source_is_the_template"] = (
        "from qiskit.providers.ibmq.runtime import" in Path(template.__file__).read_text()
    )

RESULTS["_done"] = True
finish()
