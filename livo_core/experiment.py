"""The shapes-world experiment: build pairs, train value encoders (LiVO, DPO), evaluate them against the base."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from livo_core.config import EvalConfig, TrainConfig, _Config
from livo_core.evaluation import Method, evaluate, shapes_eval_sets, write_results
from livo_core.models.loading import load_base_pipeline
from livo_core.pairs import build_pairs
from livo_core.pipeline import LivoPipeline, default_settings
from livo_core.principles import load_principles
from livo_core.schema import PAIRS, read_metadata, read_table
from livo_core.shapes.prompts import pair_candidates
from livo_core.training import Trainer

SHAPES_EVAL = EvalConfig(images_per_prompt=32, seeds=(0, 1), steps=20, guidance_scale=3.0, batch_size=64)


class ExperimentConfig(_Config):
    """One shapes-world experiment: dataset size, training budget per loss, evaluation protocol."""

    out_dir: str = Field("outputs/shapes-experiment", description="everything is written here")
    pairs_per_principle: int = Field(120, ge=1, description="candidate pairs per principle (about 80% are kept)")
    losses: tuple[Literal["livo", "dpo"], ...] = Field(
        ("livo", "dpo"), min_length=1, description="losses to train, each with the same budget"
    )
    train_minutes: float = Field(10.0, gt=0, description="wall-clock training budget per loss")
    max_steps: int = Field(100_000, ge=1, description="step cap (the minutes usually stop first)")
    learning_rate: float = Field(1e-3, gt=0, description="AdamW lr (1e-6 is the SD1.5 recipe; shapes trains faster)")
    batch_size: int = Field(8, ge=1, description="pairs per step (the release's 8)")
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept (more for convergence curves)")
    evaluation: EvalConfig = SHAPES_EVAL
    seed: int = 0


def build_shapes_pairs(out_dir: Path, per_principle: int, seed: int = 0) -> Path:
    """Generate judged pairs with the shipped shapes model; a finished dataset with the same request is reused."""
    path, request = out_dir / "pairs.parquet", {"per_principle": per_principle, "seed": seed}
    if path.is_file() and read_metadata(read_table(path, PAIRS)).get("request") == request:
        return path
    pipeline = LivoPipeline(load_base_pipeline("shapes"))
    candidates = pair_candidates(load_principles(), per_principle, seed)
    settings = default_settings("shapes")
    return build_pairs(pipeline, candidates, out_dir, "shapes", settings, meta={"request": request})[0]


def train_value_encoder(config: ExperimentConfig, loss: str, dataset: Path) -> tuple[Path, dict]:
    """Train one value encoder within the time budget; returns its last checkpoint and training stats."""
    out = Path(config.out_dir) / f"train-{loss}"
    train_config = TrainConfig(
        base_model="shapes",
        dataset=str(dataset.parent),
        output_dir=str(out),
        loss=loss,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        max_steps=config.max_steps,
        max_minutes=config.train_minutes,
        checkpoint_every=config.checkpoint_every,
        keep_checkpoints=config.keep_checkpoints,
        validate_every=10**9,
        validation_principle=None,
        seed=config.seed,
    )
    done = out / "training.json"
    if done.is_file():  # a finished run of the same experiment is reused, not trained further
        stats = json.loads(done.read_text())
        return Path(stats["checkpoint"]), stats
    started = time.time()
    checkpoint = Trainer(train_config).fit()
    stats = {
        "minutes": round((time.time() - started) / 60, 2),
        "steps": int(checkpoint.name.split("-")[-1]),
        "checkpoint": str(checkpoint),
    }
    done.write_text(json.dumps(stats))
    return checkpoint, stats


def run_experiment(config: ExperimentConfig) -> dict:
    """Base model vs each trained value encoder on held-out prompts; writes results.json and results.md."""
    out = Path(config.out_dir)
    dataset = build_shapes_pairs(out / "dataset", config.pairs_per_principle, config.seed)
    principles, base = load_principles(), load_base_pipeline("shapes")
    results = {"config": config.model_dump(mode="json"), "pairs": read_metadata(read_table(dataset, PAIRS))["counts"]}
    eval_sets = shapes_eval_sets(principles, config.evaluation.split)
    results["base"] = evaluate(LivoPipeline(base), eval_sets, config.evaluation, Method("base"))
    for loss in config.losses:
        checkpoint, stats = train_value_encoder(config, loss, dataset)
        pipeline = LivoPipeline.from_pretrained("shapes", checkpoint)
        method = Method(loss, str(checkpoint), "oracle")
        results[loss] = {"training": stats, **evaluate(pipeline, eval_sets, config.evaluation, method)}
    write_results(results, out / "results.json")
    (out / "results.md").write_text(results_table(results))
    return results


def results_table(results: dict) -> str:
    """A markdown table of the headline metrics per method, with relative change against the base."""
    base = results["base"]["summary"]
    lines = ["| method | D1 (bias) | toxic ratio | adherence | training |", "|---|---|---|---|---|"]
    for method in ["base", *[k for k in results if k not in ("base", "config", "pairs")]]:
        s, training = results[method]["summary"], results[method].get("training")
        cells = [
            f"{s['d1']:.3f} ± {s['d1_std']:.3f}" + _rel(s["d1"], base["d1"], method),
            f"{s['toxic_ratio']:.3f} ± {s['toxic_ratio_std']:.3f}"
            + _rel(s["toxic_ratio"], base["toxic_ratio"], method),
            f"{s['adherence']:.3f}"
            + ("" if method == "base" else f" ({100 * (s['adherence'] - base['adherence']):+.1f} pts)"),
            f"{training['steps']} steps, {training['minutes']} min" if training else "-",
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    seeds = json.dumps(results["config"]["evaluation"]["seeds"])
    return "\n".join(lines) + f"\n\n(mean ± std over seeds {seeds})\n\n" + per_principle_table(results)


def per_principle_table(results: dict) -> str:
    """Each principle's own metric (D1 with the majority-class share, or Avg.R / Avg.S / Max / Prob), seed 0."""
    methods = ["base", *[k for k in results if k not in ("base", "config", "pairs")]]
    lines = ["| principle | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for principle_id, first in results["base"]["per_seed"][0].items():
        cells = []
        for method in methods:
            r = results[method]["per_seed"][0][principle_id]
            if "d1" in r:
                top = max(r["class_share"], key=r["class_share"].get)
                cells.append(f"D1 {r['d1']:.2f}, D2 {r['d2']:.2f} ({top} {r['class_share'][top]:.0%})")
            else:
                metrics = (
                    f"{name} {r[key]:.2f}"
                    for name, key in (("Avg.R", "avg_r"), ("Avg.S", "avg_s"), ("Max", "max"), ("Prob", "prob"))
                )
                cells.append(", ".join(metrics))
        lines.append(f"| {principle_id} ({first['prompts']} prompts) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _rel(value: float, base: float, method: str) -> str:
    return "" if method == "base" or base == 0 else f" ({100 * (value - base) / base:+.0f}%)"
