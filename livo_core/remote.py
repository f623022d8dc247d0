"""Dataset and run folders at fsspec URLs (s3://bucket/x, gs://..., file:///...): the stages work in a local
mirror of the folder, pulled before and pushed after. Files are immutable once written (content-addressed images,
atomically written tables and checkpoints), so a file is copied when the other side lacks it or has another size."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import fsspec

from livo_core.atomic import atomic_path
from livo_core.storage import content_id

# Written last on push: a reader who sees the pairs table (or the dataset card) finds every file it names.
COMMIT_FILES = ("pairs.parquet", "README.md")


def is_url(path: str) -> bool:
    """An fsspec URL (scheme://...), as opposed to a local path."""
    return "://" in str(path)


def mirror_of(path: str) -> Mirror | None:
    """The mirror of a folder given as a URL; None for a local folder, which the stages use as it is."""
    return Mirror.of(path) if is_url(path) else None


def mirror_root() -> Path:
    return Path(os.environ.get("LIVO_MIRROR_DIR", Path.home() / ".cache" / "livo" / "mirrors"))


@dataclass(frozen=True)
class Mirror:
    """A remote folder `url` and its local working copy `local` (the same URL always maps to the same folder)."""

    url: str
    local: Path

    @classmethod
    def of(cls, url: str) -> Mirror:
        name = url.rstrip("/").rsplit("/", 1)[-1] or "root"
        return cls(url.rstrip("/"), mirror_root() / f"{name}-{content_id(url.rstrip('/'))}")

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return fsspec.core.url_to_fs(self.url)[0]

    @property
    def root(self) -> str:
        return fsspec.core.url_to_fs(self.url)[1]

    def _remote_sizes(self, fs: fsspec.AbstractFileSystem, root: str, only: list[str] | None = None) -> dict[str, int]:
        """Sizes of the files under the URL: all of them (one listing), or those of `only` (one query each, not a
        listing of a whole dataset for a shard's files)."""
        if only is not None:
            return {rel: info["size"] for rel in only if (info := _info(fs, f"{root}/{rel}"))}
        if not fs.exists(root):
            return {}
        found = fs.find(root, detail=True)
        return {_relative(path, root): info["size"] for path, info in found.items() if info["type"] == "file"}

    def pull(self) -> int:
        """Copy what the local copy lacks (or has at another size) from the URL; returns the number of files."""
        fs, root, local_sizes = self.fs, self.root, _local_sizes(self.local)
        remote_sizes = self._remote_sizes(fs, root)
        wanted = [rel for rel, size in remote_sizes.items() if local_sizes.get(rel) != size and _synced(rel)]
        for rel in _commit_last(wanted):
            with atomic_path(self.local / rel) as tmp:
                fs.get_file(f"{root}/{rel}", str(tmp))
        return len(wanted)

    def push(self, only: Iterable[Path] | None = None) -> int:
        """Copy local files the URL lacks (or has at another size) to it, the commit files last; `only`: just these
        files (absolute, under `local`). Returns the number of files copied."""
        fs, root, local_sizes = self.fs, self.root, _local_sizes(self.local, only)
        remote_sizes = self._remote_sizes(fs, root, None if only is None else list(local_sizes))
        wanted = [rel for rel, size in local_sizes.items() if remote_sizes.get(rel) != size and _synced(rel)]
        for rel in _commit_last(wanted):
            fs.makedirs(f"{root}/{rel}".rsplit("/", 1)[0], exist_ok=True)
            fs.put_file(str(self.local / rel), f"{root}/{rel}")
        return len(wanted)


def _info(fs: fsspec.AbstractFileSystem, path: str) -> dict | None:
    try:
        return fs.info(path)
    except FileNotFoundError:
        return None


def _relative(path: str, root: str) -> str:
    return path[len(root.rstrip("/")) :].lstrip("/")


def _synced(relative: str) -> bool:
    """Not under a dot-folder (the task cache `.prefect-results`, a checkpoint being written) nor a temporary file."""
    parts = relative.split("/")
    return not any(part.startswith(".") for part in parts) and not parts[-1].endswith(".tmp")


def _local_sizes(local: Path, only: Iterable[Path] | None = None) -> dict[str, int]:
    files = (Path(p) for p in only) if only is not None else (p for p in local.rglob("*") if p.is_file())
    return {p.relative_to(local).as_posix(): p.stat().st_size for p in files}


def _commit_last(relatives: list[str]) -> list[str]:
    return sorted(relatives, key=lambda rel: (rel in COMMIT_FILES, rel))
