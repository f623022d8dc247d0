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
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

import livo_core
from livo_core.atomic import atomic_path
from livo_core.checkpoint import read_state
from livo_core.config import (
    SHAPES_EVAL,
    SHAPES_RECIPE,
    SHAPES_REDTEAM,
    BaseModelName,
    EvalConfig,
    JudgeConfig,
    RedTeamConfig,
    TrainConfig,
    TrainRecipe,
    World,
    _Config,
    with_profile_defaults,
)
from livo_core.dataset import check_base_model, validate_dataset
from livo_core.evaluation import (
    EvalSet,
    Method,
    attack_eval_set,
    combine_training_seeds,
    dataset_eval_sets,
    evaluate_method,
    file_eval_sets,
    image_seeds,
    shapes_eval_sets,
    standard_methods,
)
from livo_core.export import export_value_encoder
from livo_core.judging import JudgePool
from livo_core.models.loading import load_base_pipeline, load_tokenizer, weights_id
from livo_core.pipeline import LivoPipeline, default_settings
from livo_core.principles import load_principles
from livo_core.quality import frechet_distance
from livo_core.redteam import run_red_team
from livo_core.report import (
    class_share_bars,
    image_grid,
    methods_table,
    metric_bars,
    redteam_section,
    training_curves,
    write_report,
)
from livo_core.retrieval import default_retriever
from livo_core.schema import PAIRS, read_table
from livo_core.storage import LatentCache
from livo_core.training import Trainer, ensure_latents, image_paths, missing_latents


class TrainLivoConfig(_Config):
    """The whole train-livo run; the defaults train and evaluate on build-dataset/local's shapes dataset. With
    another base model, `training` and `evaluation` default to the reference (lr 1e-6, batch 8, 15k steps; 50
    images per prompt, 25 DPM-Solver steps, CFG 7.5)."""

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
    training_seeds: tuple[int, ...] = Field(
        (0,),
        min_length=1,
        description="one training run per seed and loss; the report gives mean ± std over them; the first is "
        "exported (one fits train-livo/local's 20 minutes on 2 CPU cores; bench/shapes_alignment.py trains three)",
    )
    training: TrainRecipe = SHAPES_RECIPE
    evaluation: EvalConfig = SHAPES_EVAL
    judges: JudgeConfig = JudgeConfig()
    redteam: RedTeamConfig | None = Field(
        SHAPES_REDTEAM,
        description="the white-box attack on the first training seed's encoders (shapes world; None: skipped); "
        "`livo redteam` runs a larger budget",
    )

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: Any) -> Any:
        """Training and evaluation default to the base model's profile: sd15 gets the reference recipe."""
        return with_profile_defaults(data)

    @field_validator("losses", "training_seeds")
    @classmethod
    def _distinct(cls, value: tuple) -> tuple:
        if len(set(value)) != len(value):
            raise ValueError(f"repeats an entry: {list(value)}; list each once")
        return value

    @model_validator(mode="after")
    def _attack_sets_judged(self) -> TrainLivoConfig:
        """An attack set's principle needs a judge in this world: fail here, not after training."""
        principles = load_principles()
        for spec in self.evaluation.attack_sets:
            if self.world not in principles.get(spec.principle).judges:
                raise ValueError(f"attack set {spec.path}: {spec.principle} has no judge in world {self.world!r}")
        return self

    @model_validator(mode="after")
    def _seeds_here(self) -> TrainLivoConfig:
        if self.training.seed != 0:  # each run's seed comes from training_seeds
            raise ValueError("set training_seeds, not training.seed: every seed of training_seeds gets its own run")
        return self

    def runs(self) -> list[tuple[str, int]]:
        """Every (loss, training seed) to train."""
        return [(loss, seed) for loss in self.losses for seed in self.training_seeds]

    def input_files(self) -> tuple[str, ...]:
        """The prompt files and the dataset's pairs table: a dataset rebuilt in place is trained again."""
        attacks = (a.path for a in self.evaluation.attack_sets)
        return (*self.evaluation.prompt_files, *attacks, str(Path(self.dataset) / "pairs.parquet"))

    def cache_key(self) -> str:
        """Also the base model's weights: trained and evaluated on another model, nothing is reused."""
        return f"{super().cache_key()}-{weights_id(self.base_model)}"

    def eval_sets(self) -> list[EvalSet]:
        """The world's own sets (shapes: held-out prompts; sd15: the dataset's test split), then the prompt files'."""
        principles, e = load_principles(), self.evaluation
        if self.world == "shapes":
            sets = shapes_eval_sets(principles, e.split)
        else:
            sets = dataset_eval_sets(principles, self.dataset, self.world, judges=self.judges)
        tokenizer = load_tokenizer(self.base_model) if e.prompt_files or e.attack_sets else None
        for path in e.prompt_files:
            retriever = default_retriever(principles)
            sets += file_eval_sets(principles, path, self.world, retriever, e.prompt_column, tokenizer, self.judges)
        sets += [attack_eval_set(principles, spec, self.world, tokenizer, self.judges) for spec in e.attack_sets]
        return sets

    def train_config(self, loss: str, seed: int) -> TrainConfig:
        return TrainConfig(
            **{**self.training.model_dump(), "seed": seed},
            base_model=self.base_model,
            dataset=self.dataset,
            output_dir=str(Path(self.out_dir) / f"train-{loss}-seed{seed}"),
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
    check_base_model(root, config.base_model, weights_id(config.base_model))
    pairs = read_table(root / "pairs.parquet", PAIRS)
    images, latents = image_paths(pairs), LatentCache(root, weights_id(config.base_model, "vae"))
    encoded = (
        ensure_latents(latents, images, load_base_pipeline(config.base_model).vae)
        if missing_latents(latents, images)
        else 0
    )
    split_column = pairs["split"].to_pylist()
    splits = {split: split_column.count(split) for split in ("train", "val", "test")}
    return {"pairs": report.pairs, "latents_encoded": encoded, **splits}


Checkpoints = dict[str, dict[int, Path]]  # loss -> training seed -> final checkpoint


def by_loss(config: TrainLivoConfig, checkpoints: list[Path]) -> Checkpoints:
    """The final checkpoints of `config.runs()`, in that order, as loss -> training seed -> checkpoint."""
    out: Checkpoints = {loss: {} for loss in config.losses}
    for (loss, seed), checkpoint in zip(config.runs(), checkpoints, strict=True):
        out[loss][seed] = checkpoint
    return out


def stage_train(config: TrainLivoConfig, loss: str, seed: int, on_log: Callable[[dict], None] | None = None) -> Path:
    """Train one value encoder to `max_steps`, resuming from the newest checkpoint; returns the final checkpoint."""
    return Trainer(config.train_config(loss, seed)).fit(on_log)


def methods_of(config: TrainLivoConfig, checkpoints: Checkpoints) -> list[Method]:
    """The comparison's methods; Safe Latent Diffusion only on real SD models (its safety concept is about them)."""
    paths = {loss: {seed: str(p) for seed, p in by_seed.items()} for loss, by_seed in checkpoints.items()}
    return standard_methods(paths, with_sld=config.world != "shapes")


def evaluation_request(config: TrainLivoConfig, method: Method) -> dict:
    """Everything an evaluation's result depends on: a result file made for another request is evaluated again."""
    return {
        "method": method.__dict__,
        "checkpoint": files_stamp(method.value_encoder),
        "evaluation": config.evaluation.model_dump(mode="json"),
        "model": [config.world, weights_id(config.base_model), config.judges.model_dump(mode="json")],
        "inputs": config.files_fingerprint(),  # data files, prompt files, the dataset's pairs (sd15 eval sets)
        "cross_judges": installed_cross_judges(config.world),  # installing nudenet later evaluates again
        "livo_core": livo_core.__version__,  # a new release re-evaluates (judges, protocol)
    }


def stage_evaluate(config: TrainLivoConfig, method: Method) -> Path:
    """One method on the held-out prompts; the result file is reused when it exists for the same evaluation."""
    name = method.name + ("" if method.training_seed is None else f" seed {method.training_seed}")
    path = Path(config.out_dir) / "evaluation" / f"{re.sub(r'[^a-z0-9]+', '-', name).strip('-')}.json"
    request = evaluation_request(config, method)
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


def installed_cross_judges(world: str) -> list[str]:
    """Per principle, the cross judges this machine has for `world` (principles.yaml cross_judges)."""
    pool = JudgePool(world)
    return [f"{p.id}:{j.name}" for p in load_principles().principles for j in pool.cross_judges(p)[0]]


def files_stamp(folder: str | None) -> list | None:
    """The (name, size, mtime) of a checkpoint's files: a checkpoint retrained in place is evaluated again."""
    if folder is None:
        return None
    files = sorted(f for f in Path(folder).rglob("*") if f.is_file())
    return [[str(f.relative_to(folder)), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def features_path(evaluation: Path) -> Path:
    """Where an evaluation's CLIP image features are kept (for FID against the base model)."""
    return evaluation.with_suffix(".clip.npy")


def add_fid(runs: list[dict], evaluations: list[Path]) -> None:
    """`fid_clip` in each run's summary: the Fréchet distance of its CLIP features to the base model's, where
    measured."""
    base = [features_path(p) for r, p in zip(runs, evaluations, strict=True) if r["method"]["name"] == "base"]
    if not base or not base[0].is_file():
        return
    reference = np.load(base[0])
    for run, evaluation in zip(runs, evaluations, strict=True):
        if features_path(evaluation).is_file():
            run["summary"]["fid_clip"] = frechet_distance(np.load(features_path(evaluation)), reference)
            run["summary"]["fid_clip_std"] = float("nan")  # one evaluation of the features: no spread measured


def comparison_grid(config: TrainLivoConfig, checkpoint: Path, path: Path, seeds: int = 6) -> Path:
    """Per principle, its first evaluation prompt on the same seeds: the base model's row, then LiVO's (retrieved)."""
    base = LivoPipeline(load_base_pipeline(config.base_model))
    livo = LivoPipeline.from_pretrained(config.base_model, checkpoint)
    retriever, settings, rows = default_retriever(), default_settings(config.base_model), []
    for eval_set in config.eval_sets():
        prompt, image_seed = eval_set.prompts[0], image_seeds(0, 0, seeds)
        rows.append(base.generate([prompt] * seeds, image_seed, settings=settings))
        rows.append(livo.generate_aligned(prompt, image_seed, retriever, settings=settings)[0])
    return image_grid(rows, path)


def combined_results(evaluations: list[Path]) -> dict[str, dict]:
    """One row per method: its evaluations (one per training seed) combined, in the order they were given."""
    runs = [json.loads(p.read_text()) for p in evaluations]
    add_fid(runs, evaluations)
    by_name: dict[str, list[dict]] = {}
    for run in runs:
        by_name.setdefault(run["method"]["name"], []).append(run)
    return {name: combine_training_seeds(group) for name, group in by_name.items()}


def train_dirs(config: TrainLivoConfig, checkpoints: Checkpoints) -> dict[str, dict[int, Path]]:
    return {
        loss: {seed: Path(config.train_config(loss, seed).output_dir) for seed in by_seed}
        for loss, by_seed in checkpoints.items()
    }


def stage_redteam(config: TrainLivoConfig, checkpoints: Checkpoints) -> Path | None:
    """The red team (livo_core/redteam.py) on the first training seed's value encoders, in `out_dir/report/`: its
    JSON is reused when it exists for the same request. None where it does not run (no config, or not the shapes
    world, whose judge it needs)."""
    if config.redteam is None or config.world != "shapes":
        return None
    seed = config.training_seeds[0]
    chosen = {loss: str(by_seed[seed]) for loss, by_seed in checkpoints.items()}
    path = Path(config.out_dir) / "report" / "redteam.json"
    request = {
        "redteam": config.redteam.model_dump(mode="json"),
        "checkpoints": {loss: files_stamp(folder) for loss, folder in chosen.items()},
        "model": weights_id(config.base_model),
        "inputs": config.files_fingerprint(),  # principles (keywords, negative prompts), the retriever's weights
        "livo_core": livo_core.__version__,
    }
    if path.is_file() and json.loads(path.read_text()).get("request") == request:
        return path
    result = {"request": request, **run_red_team(config.base_model, chosen, config.redteam, path.parent)}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    return path


def stage_report(
    config: TrainLivoConfig, evaluations: list[Path], checkpoints: Checkpoints, redteam: Path | None = None
) -> Path:
    """report.md plus its PNGs in `out_dir/report/`; with `redteam` (stage_redteam's file), its section."""
    out = Path(config.out_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    results = combined_results(evaluations)
    figures = {
        "Metrics per method": metric_bars(results, out / "metrics.png"),
        "Class shares per bias principle: base vs each method": class_share_bars(results, out / "class_shares.png"),
        "Training curves: LiVO vs DPO loss": training_curves(
            train_dirs(config, checkpoints), out / "training_curves.png"
        ),
    }
    if "livo" in checkpoints:
        first = checkpoints["livo"][config.training_seeds[0]]
        grid = comparison_grid(config, first, out / "grid_base_vs_livo.png")
        figures["Base (odd rows) vs LiVO with the retrieved value (even rows), same seeds"] = grid
    (out / "results.json").write_text(json.dumps(results, indent=2))
    sections = redteam_section(json.loads(redteam.read_text())) if redteam else []
    return write_report(out, results, figures, protocol_notes(config, checkpoints), sections)


def protocol_notes(config: TrainLivoConfig, checkpoints: Checkpoints) -> list[str]:
    e = config.evaluation
    steps = {loss: read_state(next(iter(by_seed.values())))["step"] for loss, by_seed in checkpoints.items()}
    prompts = "held-out prompts of the shapes world" if config.world == "shapes" else "the dataset's test split"
    judges = sorted({f"{s.judge.name} v{s.judge.version}" for s in config.eval_sets()})
    return [
        f"Prompts: {prompts}; {e.images_per_prompt} images per bias prompt, "
        f"{e.toxic_images_per_prompt or e.images_per_prompt} per toxicity prompt, evaluation seeds {list(e.seeds)}, "
        f"{e.steps} sampler steps, CFG {e.guidance_scale}. Trained methods: mean ± std over training seeds "
        f"{list(config.training_seeds)} (in brackets: the spread over evaluation seeds); untrained rows: ± over "
        f"evaluation seeds. Bias prompts: exactly {e.value_share:g} of each prompt's images get the value (the "
        "reference), or the encoder's calibrated share (rows marked so, and the retrieved value), the same images "
        "for every method. Judges: "
        f"{', '.join(judges)}. D1: bias discrepancy (lower = fairer), read against the fair-sampler floor (the D1 "
        "of an ideal uniform sampler with as many images); toxic ratio: Avg.R, the share of images showing the "
        "concept.",
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


def run_train_livo(config: TrainLivoConfig) -> Path:
    """All stages in this process (the Prefect flow runs the same functions as tasks); returns the report's path."""
    stage_check_dataset(config)
    checkpoints = by_loss(config, [stage_train(config, loss, seed) for loss, seed in config.runs()])
    evaluations = [stage_evaluate(config, method) for method in methods_of(config, checkpoints)]
    report = stage_report(config, evaluations, checkpoints, stage_redteam(config, checkpoints))
    stage_export(config, checkpoints[config.losses[0]][config.training_seeds[0]], report)
    return report
