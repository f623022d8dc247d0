"""The build-dataset stages as plain functions: each takes the config and input paths and returns output paths."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from pydantic import Field

from livo_core.annotate import AnnotateConfig, annotate_prompts
from livo_core.config import BaseModelName, Shares, World, _Config
from livo_core.dataset import assign_split, dataset_card, validate_dataset, write_pairs
from livo_core.generation import (
    SHARDS_DIR,
    ImageRequest,
    bias_aligned_requests,
    first_phase_requests,
    generate_shard,
    read_images,
    shard_path,
    shard_requests,
)
from livo_core.judging import JudgePool, judge_images
from livo_core.models.loading import load_base_pipeline
from livo_core.pairs import PromptInfo, pair_images
from livo_core.pipeline import GenerationSettings, LivoPipeline, default_settings
from livo_core.principles import load_principles
from livo_core.prompts import PromptConfig, collect_prompts
from livo_core.schema import ANNOTATIONS, IMAGES, JUDGMENTS, PROMPTS, read_table, write_table
from livo_core.storage import latent_path


class GenerateConfig(_Config):
    """Stage 3, generate images: which base model, how many seeds per prompt, sampler settings, shards."""

    base_model: BaseModelName = Field("shapes", description="profile (shapes, sd15), pipeline folder or hub id")
    world: World = Field("shapes", description="which judges of principles.yaml check the images (shapes, sd15)")
    seeds_per_prompt: int = Field(4, ge=1, description="violating/aligned image pairs tried per prompt and principle")
    steps: int | None = Field(None, ge=1, description="DPM-Solver steps (None: the base model's default)")
    guidance_scale: float | None = Field(None, ge=1, description="CFG scale (None: the base model's default)")
    batch_size: int = Field(64, ge=1, description="images per forward pass")
    shard_size: int = Field(256, ge=1, description="images per shard, the unit of resumption and fan-out")
    seed: int = Field(0, description="base seed of every image seed")

    def settings(self) -> GenerationSettings:
        default = default_settings(self.base_model)
        return GenerationSettings(
            steps=self.steps or default.steps,
            guidance_scale=self.guidance_scale or default.guidance_scale,
            batch_size=self.batch_size,
        )


class BuildConfig(_Config):
    """The whole build-dataset run; the defaults build the shapes world's dataset offline."""

    out_dir: str = Field("outputs/dataset", description="dataset folder: tables, images/, latents/, shards/")
    prompts: PromptConfig = PromptConfig(sources=("shapes",), dedup="exact")
    annotate: AnnotateConfig = AnnotateConfig()
    generate: GenerateConfig = GenerateConfig()
    split: Shares = Field((0.8, 0.1, 0.1), description="train/val/test shares, by prompt")


# One base pipeline, with a stateful diffusers scheduler, serves every shard of a process: shards of one process
# are generated and judged one at a time, whatever the task runner's threads.
_device = threading.Lock()


@lru_cache(maxsize=2)
def _pipeline(base_model: str) -> LivoPipeline:
    return LivoPipeline(load_base_pipeline(base_model))


def stage_prompts(config: BuildConfig) -> Path:
    return collect_prompts(config.prompts, Path(config.out_dir) / "prompts.parquet")


def stage_annotate(config: BuildConfig, prompts_path: Path) -> Path:
    return annotate_prompts(config.annotate, prompts_path, Path(config.out_dir) / "annotations.parquet")


def plan_first_phase(config: BuildConfig, annotations_path: Path) -> list[list[ImageRequest]]:
    """Shards of the violating images, and of the aligned images of toxicity rewrites."""
    annotations = read_table(annotations_path, ANNOTATIONS).to_pylist()
    gen = config.generate
    requests = first_phase_requests(annotations, load_principles(), gen.seeds_per_prompt, gen.seed)
    return shard_requests(requests, gen.shard_size)


def stage_generate(config: BuildConfig, shard: Sequence[ImageRequest]) -> Path:
    gen, (images, _) = config.generate, shard_outputs(config, shard)
    if images.is_file():  # generated before: no pipeline to load
        return images
    with _device:
        return generate_shard(_pipeline(gen.base_model), shard, Path(config.out_dir), gen.base_model, gen.settings())


def judgments_path(images_path: Path) -> Path:
    """Where the JUDGMENTS of an images shard are written: beside it."""
    return images_path.with_name(images_path.name.replace("images-", "judgments-"))


def shard_outputs(config: BuildConfig, shard: Sequence[ImageRequest]) -> tuple[Path, Path]:
    """The images and judgments tables of a shard, whoever generates it: names come from its content."""
    gen = config.generate
    images = shard_path(Path(config.out_dir), shard, gen.base_model, gen.settings())
    return images, judgments_path(images)


def shard_files(config: BuildConfig, shard: Sequence[ImageRequest]) -> list[Path]:
    """Every file a generated and judged shard wrote: its two tables, its PNGs and their latents."""
    root, (images, judgments) = Path(config.out_dir), shard_outputs(config, shard)
    shas = {row["image_sha256"]: row["image_path"] for row in read_images([images])}
    return [images, judgments, *(root / path for path in shas.values()), *(latent_path(root, sha) for sha in shas)]


def stage_judge(config: BuildConfig, images_path: Path) -> Path:
    """JUDGMENTS of one images shard, written beside it; a shard already judged is not judged again."""
    out = judgments_path(images_path)
    if out.is_file():
        return out
    with _device:
        rows = judge_images(
            read_images([images_path]), load_principles(), JudgePool(config.generate.world), Path(config.out_dir)
        )
    return write_table(rows, out, JUDGMENTS, meta={"images": images_path.name})


def plan_second_phase(config: BuildConfig, image_paths: Sequence[Path], judgment_paths: Sequence[Path]):
    """Shards of the bias aligned images: an under-represented class for each judged violating image."""
    violating = [row for row in read_images(image_paths) if row["role"] == "violating"]
    judgments = [row for path in judgment_paths for row in read_table(path, JUDGMENTS).to_pylist()]
    return shard_requests(bias_aligned_requests(violating, judgments, load_principles()), config.generate.shard_size)


def stage_write_dataset(
    config: BuildConfig,
    prompts_path: Path,
    annotations_path: Path,
    image_paths: Sequence[Path],
    judgment_paths: Sequence[Path],
) -> tuple[Path, dict]:
    """Pair, split by prompt, write pairs.parquet and README.md, validate; returns the path and counts."""
    root, principles = Path(config.out_dir), load_principles()
    sources = {r["prompt_id"]: r["source"] for r in read_table(prompts_path, PROMPTS).to_pylist()}
    info = {
        row["prompt_id"]: PromptInfo(
            sources.get(row["prompt_id"], "unknown"),
            assign_split(row["prompt_id"], config.split),
            row["annotator"],
            row["annotator_version"],
            row["template_version"],
        )
        for row in read_table(annotations_path, ANNOTATIONS).to_pylist()
    }
    images = read_images(image_paths)
    judgments = [row for path in judgment_paths for row in read_table(path, JUDGMENTS).to_pylist()]
    rows = pair_images(images, judgments, principles, info)
    counts = {
        "images": len(images),
        "judged_ok": sum(j["status"] == "ok" for j in judgments),
        "judged_failed": sum(j["status"] != "ok" for j in judgments),
        "pairs": len(rows),
    }
    path = write_pairs(
        (rows[i : i + 10_000] for i in range(0, len(rows), 10_000)),
        root,
        meta={"config": config.model_dump(mode="json"), "counts": counts},
    )
    report = validate_dataset(root)
    if not report.ok:
        raise ValueError(f"dataset {root} failed validation: {report.problems[:5]}")
    (root / "README.md").write_text(dataset_card(root))
    return path, counts


def failure_summary(out_dir: str | Path) -> list[dict]:
    """Per stage (prompts, annotate, generate, judge): rows, failed rows and the commonest reasons. Failed rows are
    kept in the tables, never dropped; this is what a run reports of them."""
    root, shards = Path(out_dir), Path(out_dir) / SHARDS_DIR
    stages = (
        ("prompts", [root / "prompts.parquet"], PROMPTS),
        ("annotate", [root / "annotations.parquet"], ANNOTATIONS),
        ("generate", sorted(shards.glob("images-*.parquet")), IMAGES),
        ("judge", sorted(shards.glob("judgments-*.parquet")), JUDGMENTS),
    )
    summary = []
    for stage, paths, schema in stages:
        rows = [r for path in paths for r in read_table(path, schema).select(["status", "failure_reason"]).to_pylist()]
        reasons = Counter(row["failure_reason"] for row in rows if row["status"] != "ok")
        common = "; ".join(f"{count}x {reason}" for reason, count in reasons.most_common(3))
        summary.append({"stage": stage, "rows": len(rows), "failed": reasons.total(), "commonest reasons": common})
    return summary


def run_build(config: BuildConfig) -> tuple[Path, dict]:
    """All stages in this process (the Prefect flow runs the same functions as tasks)."""
    prompts = stage_prompts(config)
    annotations = stage_annotate(config, prompts)
    images = [stage_generate(config, shard) for shard in plan_first_phase(config, annotations)]
    judgments = [stage_judge(config, path) for path in images]
    second = [stage_generate(config, shard) for shard in plan_second_phase(config, images, judgments)]
    judgments += [stage_judge(config, path) for path in second]
    return stage_write_dataset(config, prompts, annotations, images + second, judgments)
