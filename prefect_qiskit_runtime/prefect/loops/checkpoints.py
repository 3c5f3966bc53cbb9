"""Checkpoint stores, and one loop's records in a store: a header, evaluations, a final record."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from prefect_qiskit_runtime.prefect import _utils as pu

if TYPE_CHECKING:
    from prefect.filesystems import WritableFileSystem

_CHECKPOINT_VERSION = 1


class CheckpointStore(Protocol):
    """Where a loop keeps its records: one header, one record per iteration, one final record."""

    def load(self, key: str) -> list[dict[str, Any]]:
        """Every record stored under ``key``, oldest first (``[]`` when there is none)."""
        ...

    def append(self, key: str, record: dict[str, Any]) -> None:
        """Add one record under ``key``; it must be durable when this returns."""
        ...

    def replace(self, key: str, records: list[dict[str, Any]]) -> None:
        """Store exactly ``records`` under ``key`` (used to cut a diverged history)."""
        ...


def _safe_name(key: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._")
    return name[:200] or "loop"


def default_checkpoint_dir() -> Path:
    """``$PREFECT_HOME/qiskit-runtime/checkpoints`` (created on first write)."""
    from prefect.settings import PREFECT_HOME

    return Path(PREFECT_HOME.value()).expanduser() / "qiskit-runtime" / "checkpoints"


class LocalCheckpointStore:
    """JSON-lines files in a directory, one per loop key; one appended line per iteration.

    Args:
        directory: Where the files go; default ``$PREFECT_HOME/qiskit-runtime/checkpoints``.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_checkpoint_dir()

    def path(self, key: str) -> Path:
        """The file holding ``key``'s records."""
        return self.directory / f"{_safe_name(key)}.jsonl"

    def load(self, key: str) -> list[dict[str, Any]]:
        """Read ``key``'s records; a torn last line (a crash mid-write) is dropped."""
        path = self.path(key)
        if not path.exists():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return records

    def append(self, key: str, record: dict[str, Any]) -> None:
        """Append one record and flush it to the OS (a process crash cannot lose it)."""
        path = self.path(key)
        line = json.dumps(record, separators=(",", ":")) + "\n"
        try:
            fh = path.open("a", encoding="utf-8")
        except FileNotFoundError:  # first write: no mkdir per iteration
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = path.open("a", encoding="utf-8")
        with fh:
            fh.write(line)

    def replace(self, key: str, records: list[dict[str, Any]]) -> None:
        """Atomically rewrite ``key``'s file (write a temporary file, then rename)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records), encoding="utf-8"
        )
        os.replace(tmp, path)


class BlockCheckpointStore:
    """Checkpoints in a Prefect ``WritableFileSystem`` block, for loops that may resume elsewhere.

    Each write stores the whole history (object stores cannot append), so prefer
    :class:`LocalCheckpointStore` for loops of thousands of iterations on one machine.

    Args:
        filesystem: A saved or in-memory filesystem block (``LocalFileSystem``,
            ``RemoteFileSystem``, ``S3Bucket``...).
        prefix: Folder inside the filesystem.
    """

    def __init__(self, filesystem: WritableFileSystem, prefix: str = "qiskit-runtime-checkpoints"):
        self.filesystem = filesystem
        self.prefix = prefix.strip("/")
        self._cache: dict[str, list[dict[str, Any]]] = {}

    def _path(self, key: str) -> str:
        return f"{self.prefix}/{_safe_name(key)}.json"

    def load(self, key: str) -> list[dict[str, Any]]:
        """Read ``key``'s records (``[]`` when the file does not exist)."""
        try:
            raw: Any = self.filesystem.read_path(self._path(key))
        except (FileNotFoundError, ValueError, OSError):
            records: list[dict[str, Any]] = []
        else:
            records = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        self._cache[key] = list(records)
        return records

    def append(self, key: str, record: dict[str, Any]) -> None:
        """Add a record and write the whole history back."""
        records = self._cache.setdefault(key, [])
        records.append(record)
        self.replace(key, records)

    def replace(self, key: str, records: list[dict[str, Any]]) -> None:
        """Write exactly ``records``."""
        self._cache[key] = list(records)
        written: Any = self.filesystem.write_path(self._path(key), json.dumps(records).encode())
        del written  # a coroutine only in async code, where this store is not used


@dataclass
class _LoopCheckpoint:
    """One loop's records under ``key``: the header, the evaluations so far and the final record."""

    store: CheckpointStore
    key: str
    header: dict[str, Any] | None
    history: list[dict[str, Any]]
    done: dict[str, Any] | None

    @classmethod
    def load(cls, store: CheckpointStore, key: str) -> _LoopCheckpoint:
        """Read the records under ``key``; records without a header count as no checkpoint."""
        records = store.load(key)
        header = records[0] if records and records[0].get("type") == "header" else None
        if header is None:
            records = []
        return cls(
            store=store,
            key=key,
            header=header,
            history=[r for r in records if r.get("type") == "eval"],
            done=next((r for r in records if r.get("type") == "done"), None),
        )

    def start(
        self, x0: np.ndarray, *, name: str, method: str, options: dict[str, Any]
    ) -> np.ndarray:
        """Write a new loop's header, or read a resumed loop's start point.

        Args:
            x0: The caller's starting parameters.
            name: The loop's name.
            method: The optimizer.
            options: The optimizer's options.

        Returns:
            The point the optimizer starts from.
        """
        if self.header is not None:
            if self.history:
                pu.run_logger().info(
                    "Resuming loop %s: replaying %d recorded evaluations",
                    self.key,
                    len(self.history),
                )
            # Restart from the recorded start, so the optimizer retraces the same path.
            return np.asarray(self.header["x0"], dtype=float)
        self.header = {
            "type": "header",
            "version": _CHECKPOINT_VERSION,
            "name": name,
            "method": method,
            "x0": x0.tolist(),
            "options": pu.jsonable(options),
        }
        self.store.append(self.key, self.header)
        return x0

    def append(self, record: dict[str, Any]) -> None:
        """Store one evaluation record and add it to the history."""
        self.store.append(self.key, record)
        self.history.append(record)

    def truncate(self, k: int) -> None:
        """Keep only the first ``k`` evaluations, in the store and in the history."""
        self.store.replace(self.key, [self.header or {"type": "header"}, *self.history[:k]])
        del self.history[k:]

    def finish(self, record: dict[str, Any]) -> None:
        """Store the final record; a later run of the loop returns it without evaluating."""
        self.store.append(self.key, record)
