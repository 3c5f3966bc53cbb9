"""Filesystem confinement of a job process with Landlock (Linux 5.13 and later, no privileges).

A job process runs the uploaded program with the service's own user id, so without confinement it
could read the service's database (every user's programs, results and token hashes) or another
job's directory. :func:`confine` restricts the calling process, irrevocably and for all its
children, to:

- read and write beneath its own job directory;
- read and execute beneath the system and Python directories it needs (``/usr``, ``/lib*``,
  ``/etc``, ``/proc``, ``/sys``, the interpreter's prefixes and ``sys.path``), and ``/dev``;

and denies every other filesystem access. An allowed directory that contains a protected path
(the service home, the jobs root, the database file) is left out, so that no rule can reach them.

The kernel's Landlock ABI decides which access rights can be controlled; on a kernel without
Landlock, :func:`landlock_abi` returns 0 and :func:`confine` raises :class:`SandboxUnavailable`
(the executor then runs jobs unconfined and says so in ``/health``).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Syscall numbers are the same on every architecture for these (added after the unified table).
_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

logger = logging.getLogger(__name__)

_EXECUTE = 1 << 0
_WRITE_FILE = 1 << 1
_READ_FILE = 1 << 2
_READ_DIR = 1 << 3
_REMOVE_DIR = 1 << 4
_REMOVE_FILE = 1 << 5
_MAKE_CHAR = 1 << 6
_MAKE_DIR = 1 << 7
_MAKE_REG = 1 << 8
_MAKE_SOCK = 1 << 9
_MAKE_FIFO = 1 << 10
_MAKE_BLOCK = 1 << 11
_MAKE_SYM = 1 << 12
_REFER = 1 << 13  # ABI 2
_TRUNCATE = 1 << 14  # ABI 3
_IOCTL_DEV = 1 << 15  # ABI 5

_READ = _EXECUTE | _READ_FILE | _READ_DIR
_FILE_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV

#: Directories a Python job reads from, besides the interpreter's own (if they exist).
SYSTEM_READ_PATHS: tuple[str, ...] = (
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/bin",
    "/sbin",
    "/etc",
    "/opt",
    "/proc",
    "/sys",
)


class SandboxUnavailable(RuntimeError):
    """The kernel offers no Landlock (too old, or disabled at boot)."""


def resolve_sandbox(mode: str) -> str:
    """The confinement to apply for ``mode`` (``auto``, ``landlock``, ``off``) on this kernel.

    Returns:
        ``"landlock"`` or ``"off"`` (``auto`` without Landlock logs a warning).

    Raises:
        SandboxUnavailable: ``mode`` is ``landlock`` and the kernel lacks it.
    """
    if mode == "off":
        return "off"
    if landlock_abi() > 0:
        return "landlock"
    if mode == "landlock":
        raise SandboxUnavailable(
            "--sandbox landlock: this kernel offers no Landlock (Linux 5.13 or later with "
            "Landlock enabled); use --sandbox auto or off"
        )
    logger.warning("This kernel offers no Landlock: job processes run unconfined")
    return "off"


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The Landlock ABI version of the running kernel (0 when Landlock is unavailable).

    Example:
        >>> landlock_abi() >= 0
        True
    """
    if not sys.platform.startswith("linux"):
        return 0
    version = _libc().syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    return max(0, int(version))


def _handled_rights(abi: int) -> int:
    rights = (1 << 13) - 1  # EXECUTE .. MAKE_SYM: ABI 1
    if abi >= 2:
        rights |= _REFER
    if abi >= 3:
        rights |= _TRUNCATE
    if abi >= 5:
        rights |= _IOCTL_DEV
    return rights


@dataclass
class Confinement:
    """What :func:`confine` allowed, for the job's log and the tests.

    Attributes:
        abi: The Landlock ABI used.
        writable: Directories with full access.
        readable: Directories with read and execute access.
        skipped: Candidate directories left out because they contain a protected path.
    """

    abi: int
    writable: list[str] = field(default_factory=list)
    readable: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _contains(parent: Path, child: Path) -> bool:
    return child == parent or parent in child.parents


def read_roots(extra: Iterable[str] = ()) -> list[str]:
    """The directories a job may read: system paths, the interpreter's prefixes and ``sys.path``.

    Args:
        extra: More directories to allow reading.

    Returns:
        Existing, resolved directories, without duplicates, in a stable order.
    """
    candidates = [
        *SYSTEM_READ_PATHS,
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        *(p for p in sys.path if p),
        *extra,
    ]
    seen: dict[str, None] = {}
    for candidate in candidates:
        path = Path(candidate).resolve()
        if path.is_dir():
            seen.setdefault(str(path), None)
    return list(seen)


@functools.cache
def job_read_roots() -> tuple[str, ...]:
    """:func:`read_roots` of a job process, this package's tree included; computed once.

    The warm parent calls it before it forks, so that every job inherits the answer instead of
    resolving the same directories again.
    """
    import prefect_qiskit_runtime

    package = os.path.dirname(os.path.dirname(prefect_qiskit_runtime.__file__))
    return tuple(read_roots([package]))


def confine(
    writable: Sequence[str | os.PathLike[str]],
    protected: Sequence[str | os.PathLike[str]],
    *,
    readable: Iterable[str] | None = None,
) -> Confinement:
    """Restrict this process (and every process it starts) to the given directories, for good.

    Args:
        writable: Directories with full access (the job directory).
        protected: Paths no rule may reach (the service home, the database file); an allowed
            directory containing one of them is skipped.
        readable: Directories with read access (default: :func:`read_roots`).

    Returns:
        What was allowed and what was skipped.

    Raises:
        SandboxUnavailable: The kernel has no Landlock.
        OSError: A Landlock call failed.
    """
    abi = landlock_abi()
    if abi < 1:
        raise SandboxUnavailable("this kernel offers no Landlock")
    libc = _libc()
    handled = _handled_rights(abi)
    attr = _RulesetAttr(handled_access_fs=handled)
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    shielded = [Path(p).resolve() for p in protected]
    done = Confinement(abi=abi)
    try:
        # The job directory lies inside the protected home by design; it is granted as such.
        for path in writable:
            done.writable.append(_add_rule(libc, ruleset, Path(path), handled, handled))
        for path in read_roots() if readable is None else readable:
            resolved = Path(path).resolve()
            if any(_contains(resolved, guarded) for guarded in shielded):
                done.skipped.append(str(resolved))
            else:
                done.readable.append(_add_rule(libc, ruleset, resolved, _READ, handled))
        if Path("/dev").is_dir():
            _add_rule(libc, ruleset, Path("/dev"), _READ | _WRITE_FILE | _IOCTL_DEV, handled)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0):
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return done


def _add_rule(libc: ctypes.CDLL, ruleset: int, path: Path, rights: int, handled: int) -> str:
    """Allow ``rights`` beneath ``path``; returns the resolved path."""
    resolved = path.resolve()
    if not resolved.is_dir():
        rights &= _FILE_RIGHTS  # the kernel refuses directory rights on a file
    fd = os.open(resolved, os.O_PATH | os.O_CLOEXEC)
    try:
        rule = _PathBeneathAttr(allowed_access=rights & handled, parent_fd=fd)
        if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0):
            raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {resolved}")
    finally:
        os.close(fd)
    return str(resolved)
