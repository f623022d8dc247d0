"""The train-livo job, stage by stage: check the dataset, train, evaluate every method, report, export.

Each stage function takes the typed config plus the paths earlier stages returned and writes under
`config.out_dir`; `flows/train_livo.py` wires them as Prefect tasks. Stages are idempotent: training resumes from
its newest checkpoint, a finished evaluation file is reused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

import livo_core
from livo_core.atomic import atomic_path
from livo_core.checkpoint import read_state
from livo_core.config import BaseModelName, EvalConfig, TrainConfig, TrainRecipe, World, _Config
from livo_core.dataset import validate_dataset
from livo_core.evaluation import (
    EvalSet,
    Method,
    dataset_eval_sets,
    evaluate_method,
    file_eval_sets,
    image_seeds,
    shapes_eval_sets,
    standard_methods,
)
from livo_core.export import export_value_encoder
from livo_core.models.loading import load_base_pipeline
from livo_core.pipeline import LivoPipeline, default_settings
from livo_core.principles import load_principles
from livo_core.quality import frechet_distance
from livo_core.report import image_grid, methods_table, metric_bars, training_curves, write_report
from livo_core.retrieval import default_retriever
from livo_core.schema import PAIRS, read_table
from livo_core.training import Trainer, ensure_latents

# The shapes world's recipe: lr 1e-3 (1e-6 is SD1.5's), 1,500 steps of 8 pairs (~5 min on 2 cores), checkpoints
# every 250 steps so a killed run loses little. Steps, not minutes: a resumed run must end where an uninterrupted
# one does. Evaluation: 10 images per held-out prompt, 2 seeds; the whole run fits in ~18 min on 2 cores.
SHAPES_RECIPE = TrainRecipe(
    learning_rate=1e-3,
    max_steps=1500,
    checkpoint_every=250,
    validate_every=750,
    num_threads=2,
)
SHAPES_EVAL = EvalConfig(images_per_prompt=10, seeds=(0, 1), steps=20, guidance_scale=3.0, batch_size=64)


class TrainLivoConfig(_Config):
    """The whole train-livo run; the defaults train and evaluate on build-dataset/local's shapes dataset."""

    dataset: str = Field("outputs/dataset", description="a build-dataset folder (pairs.parquet, images/)")
    out_dir: str = Field("outputs/train-livo", description="checkpoints, evaluations, report and export go here")
    base_model: BaseModelName = Field("shapes", description="profile (shapes, sd15), pipeline folder or hub id")
    world: World = Field(
        "shapes",
        description="shapes: held-out world prompts, exact judges; sd15: the dataset's test split, real judges",
    )
    losses: tuple[Literal["livo", "dpo"], ...] = Field(
        ("livo", "dpo"), min_length=1, description="losses to train; the first is exported, the others are baselines"
    )
    training: TrainRecipe = SHAPES_RECIPE
    evaluation: EvalConfig = SHAPES_EVAL

    @field_validator("losses")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"losses repeat a loss: {list(value)}; list each once")
        return value

    def eval_sets(self) -> list[EvalSet]:
        """The world's own sets (shapes: held-out prompts; sd15: the dataset's test split), then the prompt files'."""
        principles, e = load_principles(), self.evaluation
        if self.world == "shapes":
            sets = shapes_eval_sets(principles, e.split)
        else:
            sets = dataset_eval_sets(principles, self.dataset, self.world)
        for path in e.prompt_files:
            sets += file_eval_sets(principles, path, self.world, default_retriever(principles), e.prompt_column)
        return sets

    def train_config(self, loss: str) -> TrainConfig:
        return TrainConfig(
            **self.training.model_dump(),
            base_model=self.base_model,
            dataset=self.dataset,
            output_dir=str(Path(self.out_dir) / f"train-{loss}"),
            loss=loss,
        )


def stage_check_dataset(config: TrainLivoConfig) -> dict:
    """Validate the dataset (schema version, files, ids, splits); cache VAE latents it lacks. Returns counts."""
    root = Path(config.dataset)
    if not (root / "pairs.parquet").is_file():
        raise FileNotFoundError(
            f"no dataset at {root}: expected {root / 'pairs.parquet'}; run build-dataset first "
            "(`livo run-deployment build-dataset/local --wait`) or set `dataset` to its out_dir"
        )
    report = validate_dataset(root)
    if not report.ok:
        raise ValueError(f"dataset {root} is invalid: " + "; ".join(report.problems[:5]))
    rows = read_table(root / "pairs.parquet", PAIRS).to_pylist()
    encoded = ensure_latents(root, rows, load_base_pipeline(config.base_model).vae)
    splits = {split: sum(r["split"] == split for r in rows) for split in ("train", "val", "test")}
    return {"pairs": report.pairs, "latents_encoded": encoded, **splits}


def stage_train(config: TrainLivoConfig, loss: str, on_log: Callable[[dict], None] | None = None) -> Path:
    """Train one value encoder to `max_steps`, resuming from the newest checkpoint; returns the final checkpoint."""
    return Trainer(config.train_config(loss)).fit(on_log)


def methods_of(config: TrainLivoConfig, checkpoints: dict[str, Path]) -> list[Method]:
    """The comparison's methods; Safe Latent Diffusion only on real SD models (its safety concept is about them)."""
    return standard_methods({loss: str(p) for loss, p in checkpoints.items()}, with_sld=config.world != "shapes")


def stage_evaluate(config: TrainLivoConfig, method: Method) -> Path:
    """One method on the held-out prompts; the result file is reused when it exists for the same evaluation."""
    path = Path(config.out_dir) / "evaluation" / f"{re.sub(r'[^a-z0-9]+', '-', method.name).strip('-')}.json"
    request = {
        "method": method.__dict__,
        "evaluation": config.evaluation.model_dump(mode="json"),
        "livo_core": livo_core.__version__,  # a new release re-evaluates (judges, protocol)
    }
    if path.is_file() and json.loads(path.read_text()).get("request") == request:
        return path
    retriever = default_retriever() if method.value == "retrieved" else None
    result = {
        "request": request,
        **evaluate_method(method, config.base_model, config.eval_sets(), config.evaluation, retriever),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    if (features := result.pop("clip_features", None)) is not None:
        np.save(features_path(path), features.astype(np.float32))
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    return path


def features_path(evaluation: Path) -> Path:
    """Where an evaluation's CLIP image features are kept (for FID against the base model)."""
    return evaluation.with_suffix(".clip.npy")


def add_fid(results: dict[str, dict], evaluations: list[Path]) -> None:
    """`fid_clip` in each summary: the Fréchet distance of its CLIP features to the base model's, where measured."""
    features = {r["method"]["name"]: features_path(p) for r, p in zip(results.values(), evaluations, strict=True)}
    if "base" not in features or not features["base"].is_file():
        return
    base = np.load(features["base"])
    for name, path in features.items():
        if path.is_file():
            results[name]["summary"]["fid_clip"] = frechet_distance(np.load(path), base)


def comparison_grid(config: TrainLivoConfig, checkpoint: Path, path: Path, seeds: int = 6) -> Path:
    """Per principle, its first evaluation prompt on the same seeds: the base model's row, then LiVO's (retrieved)."""
    base = LivoPipeline(load_base_pipeline(config.base_model))
    livo = LivoPipeline.from_pretrained(config.base_model, checkpoint)
    retriever, settings, rows = default_retriever(), default_settings(config.base_model), []
    for eval_set in config.eval_sets():
        prompt, image_seed = eval_set.prompts[0], image_seeds(0, 0, seeds)
        rows.append(base.generate([prompt] * seeds, image_seed, settings=settings)[0])
        rows.append(livo.generate_aligned(prompt, image_seed, retriever, settings=settings)[0])
    return image_grid(rows, path)


def stage_report(config: TrainLivoConfig, evaluations: list[Path], checkpoints: dict[str, Path]) -> Path:
    """report.md plus its PNGs in `out_dir/report/`."""
    out = Path(config.out_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    results = {r["method"]["name"]: r for r in (json.loads(p.read_text()) for p in evaluations)}
    add_fid(results, evaluations)
    train_dirs = {loss: Path(config.out_dir) / f"train-{loss}" for loss in checkpoints}
    figures = {
        "Metrics per method": metric_bars(results, out / "metrics.png"),
        "Training curves: LiVO vs DPO loss": training_curves(train_dirs, out / "training_curves.png"),
    }
    if "livo" in checkpoints:
        grid = comparison_grid(config, checkpoints["livo"], out / "grid_base_vs_livo.png")
        figures["Base (odd rows) vs LiVO with the retrieved value (even rows), same seeds"] = grid
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return write_report(out, results, figures, protocol_notes(config, checkpoints))


def protocol_notes(config: TrainLivoConfig, checkpoints: dict[str, Path]) -> list[str]:
    e = config.evaluation
    steps = {loss: read_state(path)["step"] for loss, path in checkpoints.items()}
    prompts = "held-out prompts of the shapes world" if config.world == "shapes" else "the dataset's test split"
    judges = sorted({f"{s.judge.name} v{s.judge.version}" for s in config.eval_sets()})
    return [
        f"Prompts: {prompts}; {e.images_per_prompt} images per prompt, seeds {list(e.seeds)} "
        f"(mean ± std over seeds), value dropout {e.value_dropout} on bias prompts, {e.steps} sampler steps, "
        f"CFG {e.guidance_scale}. Judges: {', '.join(judges)}. D1: bias discrepancy (lower = fairer); "
        "toxic ratio: Avg.R, the share of images showing the concept.",
        f"Training steps: {steps}; dataset: `{config.dataset}`; base model: `{config.base_model}`.",
        clip_note(e),
    ]


def clip_note(evaluation: EvalConfig) -> str:
    if evaluation.clip_model:
        return (
            f"CLIP score and FID on CLIP features (vs the base model's images): open_clip {evaluation.clip_model}, "
            f"weights {evaluation.clip_pretrained}."
        )
    return (
        "CLIP score and FID not measured (set evaluation.clip_model; no CLIP weights exist offline, so on the shapes "
        "world the judge's prompt adherence stands in for CLIP score)."
    )


def stage_export(config: TrainLivoConfig, checkpoint: Path, report: Path) -> Path:
    """The first loss's value encoder in the Hugging Face layout, with a model card holding the report's table."""
    results = json.loads((report.parent / "results.json").read_text())
    return export_value_encoder(
        checkpoint, Path(config.out_dir) / "export", config.base_model, config.dataset, methods_table(results)
    )
