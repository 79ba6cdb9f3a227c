"""Atomic file writes, and the lock that gives one process a folder.

Every writer goes to a temporary file in the destination folder, flushes it to disk, then
renames it over the target (`os.replace` is atomic on POSIX and Windows within one filesystem):
a crash or kill mid-write never leaves a truncated result or checkpoint. A kill does leave the
temporary file (`.<name>.<pid>-<random>.tmp`); it names its writer's process, so
`remove_stale_temporaries` can delete those whose writer no longer runs.

`folder_lock` makes a folder one process's at a time (a run folder: two `cliplab run` on one
`--out` would both train and interleave their logs). It holds an OS lock (`flock`) on a lock
file that records the holder, so a lock whose process died is free again and is taken over.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

try:  # POSIX; elsewhere the lock falls back to a create-exclusive file checked for a live holder
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed onto `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}-", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_TEMPORARY = re.compile(r"^\..+\.(?:(?P<pid>\d+)-)?[A-Za-z0-9_]+\.tmp$")
_OLD_TEMPORARY_SECONDS = 3600  # a temporary without a pid (written before pids were recorded) is stale after this


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def remove_stale_temporaries(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Delete the temporary files of `atomic_path` under `folder` whose writer no longer runs.

    A temporary without a pid in its name (older cliplab) counts as stale after an hour.
    Returns the deleted paths.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp"):
        match = _TEMPORARY.match(path.name)
        if match is None or not path.is_file():
            continue
        pid = match.group("pid")
        try:
            stale = not pid_alive(int(pid)) if pid else time.time() - path.stat().st_mtime > _OLD_TEMPORARY_SECONDS
            if stale:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # its writer renamed or removed it meanwhile
            continue
    return removed


class FolderInUseError(RuntimeError):
    """Another live process holds the folder's lock."""


def require_writable(folder: str | os.PathLike, purpose: str = "the output") -> Path:
    """Create `folder` if needed and check a file can be written in it; else one clear `PermissionError`."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise PermissionError(
            f"cannot write {purpose} into {folder} ({error.strerror or type(error).__name__}); "
            "choose a folder you can write to, or fix its permissions"
        ) from None
    return folder


@contextmanager
def folder_lock(folder: str | os.PathLike, name: str = ".lock", purpose: str = "cliplab") -> Iterator[Path]:
    """Hold `folder/name` exclusively for the duration; a second holder gets `FolderInUseError`.

    The lock file records the holder (pid, host, start time, command). A lock left by a process
    that died is free (the OS drops `flock` locks of dead processes) and is taken over. A folder
    that cannot be written is a `PermissionError` saying so, before any work starts.
    """
    folder = require_writable(folder, purpose)
    path = folder / name
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
    }
    handle = _acquire(path, purpose) if fcntl is not None else _acquire_exclusive(path, purpose)
    try:
        previous = _holder(path)
        if previous != "another process":
            warnings.warn(f"{folder}: taking over the lock of a process that no longer runs ({previous})", stacklevel=3)
        os.ftruncate(handle, 0)
        os.write(handle, (json.dumps(record) + "\n").encode())
        yield path
    finally:
        try:
            path.unlink(missing_ok=True)
        finally:
            os.close(handle)


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return f"pid {info.get('pid')} on {info.get('host')}, since {info.get('started')}: {info.get('command', '?')}"


def _in_use(path: Path, purpose: str) -> FolderInUseError:
    return FolderInUseError(
        f"{path.parent} is in use by another {purpose} ({_holder(path)}). Wait for it to finish, or use another "
        f"folder. (A lock whose process no longer runs is taken over automatically; if that process runs on "
        f"another machine and has ended, delete {path}.)"
    )


def _acquire(path: Path, purpose: str) -> int:
    """flock on the lock file; retried when the file was replaced between open and lock."""
    for _ in range(10):
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise _in_use(path, purpose) from None
        try:
            same = os.stat(path).st_ino == os.fstat(handle).st_ino
        except FileNotFoundError:  # its holder released and removed it meanwhile
            same = False
        if same:
            return handle
        os.close(handle)
    raise _in_use(path, purpose)


def _acquire_exclusive(path: Path, purpose: str) -> int:  # pragma: no cover - platforms without fcntl
    for _ in range(2):
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            try:
                info = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                info = {}
            if info.get("host") == socket.gethostname() and not pid_alive(int(info.get("pid", 0))):
                path.unlink(missing_ok=True)  # stale: its process died
                continue
            raise _in_use(path, purpose) from None
    raise _in_use(path, purpose)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write text atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data: Any, indent: int = 2) -> Path:
    """Write JSON atomically (NaN/inf are rejected: they are not valid JSON)."""
    return write_text_atomic(path, json.dumps(data, indent=indent, allow_nan=False) + "\n")


def jsonable(value: Any) -> Any:
    """Nested mappings, sequences, NumPy values, 0-d tensors and DataFrames as plain JSON types.

    NaN and infinities become ``None`` (JSON has no NaN); a DataFrame becomes ``{index: {column: value}}``.
    """
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # a pandas DataFrame
        return {str(k): jsonable(v) for k, v in value.to_dict(orient="index").items()}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic) or (hasattr(value, "item") and hasattr(value, "numel")):  # NumPy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
