# mypy: ignore-errors
"""Account discovery as the old client does it (spec §2; checklist items 1-5, 44).

ARGS: url, carol, dave (tokens).
"""

import requests
from oc_common import ARGS, IBMQ, RESULTS, check, connect, finish, raised

URL = ARGS["url"]

with check("version") as r:
    # The client's own first call: no token; the body must hold the key "api-auth".
    resp = requests.get(URL + "/api/version", timeout=30)
    r["status"] = resp.status_code
    r["body"] = resp.json()

with check("raw_no_token") as r:
    # Item 44: a runtime call without a token, and with a wrong one.
    resp = requests.get(URL + "/runtime/programs", timeout=30)
    r["status"] = resp.status_code
    r["body"] = resp.json()
    resp = requests.get(
        URL + "/runtime/jobs", headers={"X-Access-Token": "wrong-token"}, timeout=30
    )
    r["wrong_status"] = resp.status_code
    r["wrong_body"] = resp.json()

with check("enable_account") as r:
    provider = connect(ARGS["carol"])
    r["provider_type"] = type(provider).__name__
    cred = provider.credentials
    r["hub"], r["group"], r["project"] = cred.hub, cred.group, cred.project
    r["url"] = cred.url
    r["base_url"] = cred.base_url
    r["websockets_url"] = cred.websockets_url
    r["runtime_url"] = cred.runtime_url
    r["access_token_set"] = bool(cred.access_token)
    r["active_url"] = (IBMQ.active_account() or {}).get("url")
    r["providers"] = [
        [p.credentials.hub, p.credentials.group, p.credentials.project] for p in IBMQ.providers()
    ]
    r["has_runtime"] = provider.has_service("runtime")
    r["runtime_type"] = type(provider.runtime).__name__

with check("devices") as r:
    backends = provider.backends()
    r["names"] = sorted(b.name() for b in backends)
    aer = provider.get_backend("aer_simulator")
    conf = aer.configuration()
    r["aer_n_qubits"] = conf.n_qubits
    r["aer_simulator_flag"] = conf.simulator
    r["aer_basis_gates"] = list(conf.basis_gates)
    # Attribute access is how the seed documentation reaches a backend.
    r["alias_name"] = provider.backend.ibmq_qasm_simulator.name()
    r["unknown"] = raised(lambda: provider.get_backend("no_such_backend"))

with check("bad_token") as r:
    IBMQ.disable_account()
    r["raised"] = raised(lambda: IBMQ.enable_account("not-a-valid-token", url=URL + "/api"))
    r["active_after"] = IBMQ.active_account()

with check("second_user") as r:
    provider_d = connect(ARGS["dave"])
    r["provider_type"] = type(provider_d).__name__
    r["runtime_url"] = provider_d.credentials.runtime_url
    r["program_count"] = len(provider_d.runtime.programs(limit=None))

with check("reenable") as r:
    # Switching accounts back and forth in one process works; each login is a fresh token fetch.
    provider = connect(ARGS["carol"])
    r["program_count"] = len(provider.runtime.programs(limit=None))

RESULTS["_done"] = True
finish()
