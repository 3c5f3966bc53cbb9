"""noop: the trivial program of the round-trip and drain benchmarks; returns its input ``x``."""


def main(backend, user_messenger, **kwargs):
    """Return ``kwargs["x"]`` (``None`` when absent) without touching the backend."""
    return kwargs.get("x")
