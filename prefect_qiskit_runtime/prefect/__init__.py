"""The Prefect layer: blocks, tasks and hybrid-loop helpers built on the client.

It depends on :mod:`prefect_qiskit_runtime.client` and :mod:`prefect_qiskit_runtime.core`, never on
the server; the embedded service is reached through the client like any other.
"""
