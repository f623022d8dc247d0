"""The shapes-world experiment in one process: build-dataset then train-livo, the flows' own stages, one folder."""

from __future__ import annotations

import json
from pathlib import Path

from livo_core.build import BuildConfig, run_build
from livo_core.config import SHAPES_EVAL, SHAPES_RECIPE
from livo_core.train_livo import TrainLivoConfig, run_train_livo


def run_experiment(out_dir: str | Path, build: BuildConfig, train: TrainLivoConfig) -> dict:
    """Build the dataset in `out_dir/dataset`, train and evaluate in `out_dir/train-livo`; returns results.json's
    content (one row per method, mean and spread over training seeds) with the dataset's counts."""
    out = Path(out_dir)
    dataset, counts = run_build(build.model_copy(update={"out_dir": str(out / "dataset")}))
    train = train.model_copy(update={"dataset": str(dataset.parent), "out_dir": str(out / "train-livo")})
    report = run_train_livo(train)
    return {"pairs": counts, "report": str(report), **json.loads((report.parent / "results.json").read_text())}


BENCH_EVAL = SHAPES_EVAL.model_copy(update={"images_per_prompt": 32, "toxic_images_per_prompt": 10})


def bench_config(losses: tuple[str, ...], training_seeds: tuple[int, ...], steps: int = 1500) -> TrainLivoConfig:
    """The benchmark's train-livo run: the main job's recipe, once per training seed, 32 images per held-out bias
    prompt and 10 per toxicity prompt."""
    recipe = SHAPES_RECIPE.model_copy(update={"max_steps": steps, "checkpoint_every": 500, "keep_checkpoints": 100})
    return TrainLivoConfig(losses=losses, training_seeds=training_seeds, training=recipe, evaluation=BENCH_EVAL)
