"""Wheels for a GPU machine that cannot reach a package index: every distribution `python -m bench.gpu` imports
that the machine's image lacks, at the versions installed here, for CPython 3.12 on x86-64 Linux.

    python -m bench.gpu_wheels --have have.txt  # have.txt: the machine's package names, whitespace-separated
    -> .whl/ (git-ignored); on the machine:
    pip install --no-index --no-deps --target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site:. python -m bench.gpu
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import subprocess
import sys
from pathlib import Path

PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
OWN = {"livo"}  # travels as the working tree


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_distributions() -> dict[str, str]:
    """name -> version of every installed distribution whose modules `bench.gpu` (and its judges) import."""
    import bench.gpu  # noqa: F401, PLC0415
    import livo_core.judges.gender  # noqa: F401, PLC0415
    import livo_core.judges.nsfw  # noqa: F401, PLC0415

    owners = metadata.packages_distributions()
    names = {d for module in list(sys.modules) for d in owners.get(module.split(".")[0], [])}
    return {_normal(name): metadata.version(name) for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--have", type=Path, required=True, help="file of the package names the machine has")
    parser.add_argument("--dest", type=Path, default=Path(".whl"))
    args = parser.parse_args()
    have = {_normal(name) for name in args.have.read_text().replace(",", " ").split()}
    needed = sorted(f"{n}=={v}" for n, v in imported_distributions().items() if n not in have | OWN)
    print("wheels:", " ".join(needed))
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
         "--implementation", "cp", *platforms, "-d", str(args.dest), *needed],
        check=True,
    )  # fmt: skip


if __name__ == "__main__":
    main()
