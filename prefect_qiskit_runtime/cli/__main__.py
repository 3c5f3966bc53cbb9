"""``python -m prefect_qiskit_runtime.cli``: the same as the ``prefect-qiskit-runtime`` script."""

import sys

from prefect_qiskit_runtime.cli import main

sys.exit(main())
