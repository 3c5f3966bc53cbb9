"""What the blocks share: their logo, documentation root and per-thread client cache."""

from __future__ import annotations

import threading
from typing import Any

_DOCS = "https://prefect-qiskit-runtime.github.io/prefect-qiskit-runtime"
# The Qiskit organisation's avatar: square, 200 px, served by GitHub's CDN.
_LOGO = "https://avatars.githubusercontent.com/u/30696987?s=200&v=4"


class _ClientCache:
    """Clients of one block, one per thread and per connection settings.

    ``requests.Session`` is not safe to share between threads, so every thread gets its own client.
    The cache never travels with the block: copying or pickling a block (Dask, Ray, process pools,
    ``model_copy(deep=True)``) gives the copy an empty cache, and two blocks compare equal whatever
    their caches hold.
    """

    __slots__ = ("_local",)

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self, key: str) -> Any:
        clients: dict[str, Any] | None = getattr(self._local, "clients", None)
        return None if clients is None else clients.get(key)

    def put(self, key: str, client: Any) -> None:
        clients: dict[str, Any] | None = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        clients.clear()  # settings changed: the old client is no longer right for this block
        clients[key] = client

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ClientCache)

    def __hash__(self) -> int:
        return 0

    def __copy__(self) -> _ClientCache:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _ClientCache:
        return _ClientCache()

    def __reduce__(self) -> tuple[type[_ClientCache], tuple[()]]:
        return (_ClientCache, ())
