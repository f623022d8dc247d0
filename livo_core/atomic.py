"""Atomic file writes: a temporary name unique to the writer, fsync, rename; a killed writer leaves only a `.tmp`."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_path(path: Path) -> Path:
    """`.{name}.{pid}.{random}.tmp` beside `path`: two writers of one file (two workers, a retry beside a zombie)
    never share a temporary file, and no reader looks at a hidden `.tmp` name."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def fsync_tree(path: Path) -> None:
    """Flush a file, or every file under a folder, to disk."""
    for file in [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]:
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write the file `path` under; on success fsync it and rename it to `path`, on
    error remove it. Readers see the old file or the complete new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        fsync_tree(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
