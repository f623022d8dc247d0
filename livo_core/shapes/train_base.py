"""Reproduces the shipped shapes model: `python -m livo_core.shapes.train_base --out DIR`."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from livo_core.shapes.base_model import ShapesModelConfig, train_shapes_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="pipeline folder to write")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    for field in dataclasses.fields(ShapesModelConfig):
        if field.type in ("int", "float"):
            parser.add_argument(f"--{field.name.replace('_', '-')}", type=eval(field.type), default=field.default)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(ShapesModelConfig) if hasattr(args, f.name)}
    train_shapes_pipeline(args.out, ShapesModelConfig(**overrides))


if __name__ == "__main__":
    main()
