"""Executors run jobs for the scheduler: :mod:`.base` is the interface, :mod:`.local` the pool."""
