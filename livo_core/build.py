"""The build-dataset stages as plain functions: each takes the config and input paths and returns output paths."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from livo_core.annotate import AnnotateConfig, annotate_prompts
from livo_core.config import BaseModelName, JudgeConfig, Shares, World, _Config
from livo_core.dataset import dataset_card, split_of, validate_dataset, write_pairs
from livo_core.debias import MIN_FAMILY_IMAGES, BiasPlan
from livo_core.generation import (
    ImageRequest,
    ModelIdentity,
    bias_aligned_requests,
    bias_plans,
    first_phase_requests,
    generate_shard,
    read_images,
    shard_path,
    shard_requests,
)
from livo_core.hf_dataset import write_hf_splits
from livo_core.judging import JudgePool, judge_images
from livo_core.models.loading import (
    Sampler,
    default_dtype,
    load_base_pipeline,
    load_tokenizer,
    tune_unet,
    weights_id,
)
from livo_core.pairs import PromptInfo, pair_images
from livo_core.pipeline import GenerationSettings, LivoPipeline, default_settings
from livo_core.principles import load_principles
from livo_core.prompts import PromptConfig, collect_prompts
from livo_core.schema import ANNOTATIONS, IMAGES, JUDGMENTS, PROMPTS, read_table, write_table
from livo_core.storage import LatentCache


class GenerateConfig(_Config):
    """Stage 3, generate images: which base model, how many seeds per prompt, sampler settings, shards."""

    base_model: BaseModelName = Field("shapes", description="profile (shapes, sd15), pipeline folder or hub id")
    world: World = Field("shapes", description="which judges of principles.yaml check the images (shapes, sd15)")
    seeds_per_prompt: int = Field(4, ge=1, description="violating/aligned image pairs tried per prompt and principle")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="weights dtype of the generator (auto: float16 on a GPU, float32 on CPU)"
    )
    sampler: Sampler = Field("dpm-solver++", description="DPM-Solver++ multistep (the reference), or the folder's own")
    steps: int | None = Field(None, ge=1, description="DPM-Solver steps (None: the base model's default)")
    guidance_scale: float | None = Field(None, ge=1, description="CFG scale (None: the base model's default)")
    batch_size: int = Field(64, ge=1, description="images per forward pass")
    shard_size: int = Field(256, ge=1, description="images per shard, the unit of resumption and fan-out")
    channels_last: bool = Field(False, description="the UNet in channels-last memory format (speed only)")
    compile_unet: bool = Field(False, description="torch.compile the UNet (speed only; each batch shape compiles once)")
    seed: int = Field(0, description="base seed of every image seed")

    def torch_dtype(self) -> torch.dtype:
        return default_dtype() if self.dtype == "auto" else getattr(torch, self.dtype)

    def identity(self) -> ModelIdentity:
        """The generator's identity in every image id: weights hash, dtype and sampler, not only the name."""
        dtype = str(self.torch_dtype()).removeprefix("torch.")
        return ModelIdentity(
            self.base_model, weights_id(self.base_model), dtype, self.sampler, weights_id(self.base_model, "vae")
        )

    def settings(self) -> GenerationSettings:
        default = default_settings(self.base_model)
        return GenerationSettings(
            steps=self.steps or default.steps,
            guidance_scale=self.guidance_scale or default.guidance_scale,
            batch_size=self.batch_size,
        )


class DebiasConfig(_Config):
    """Stage 5, bias targets: aligned classes drawn so that the images a user gets are as balanced as possible."""

    value_share: float | None = Field(
        None,
        gt=0,
        le=1,
        description="share of a bias prompt's images that get the value at inference; None: calibrated per "
        "principle (the smallest share that can reach uniform, within [0.5, 1]); 0.5: the reference",
    )
    min_family_images: int = Field(
        MIN_FAMILY_IMAGES, ge=1, description="judged base images a prompt family needs for its own estimate of p"
    )


class BuildConfig(_Config):
    """The whole build-dataset run; the defaults build the shapes world's dataset offline."""

    out_dir: str = Field("outputs/dataset", description="dataset folder: tables, images/, latents/, shards/")
    prompts: PromptConfig = PromptConfig(sources=("shapes",), dedup="exact")
    annotate: AnnotateConfig = AnnotateConfig()
    generate: GenerateConfig = GenerateConfig()
    judges: JudgeConfig = JudgeConfig()
    debias: DebiasConfig = DebiasConfig()
    split: Shares = Field(
        (0.8, 0.1, 0.1), description="train/val/test shares, by template item (every phrasing of it), else prompt"
    )

    def input_files(self) -> tuple[str, ...]:
        return self.prompts.files

    def cache_key(self) -> str:
        """Also the generator's identity: other weights under the same name, or another dtype ("auto" on a GPU
        machine), make other images."""
        return f"{super().cache_key()}-{self.generate.identity().key}"


# One base pipeline, with a stateful diffusers scheduler, serves every shard of a process: shards of one process
# are generated and judged one at a time, whatever the task runner's threads.
_device = threading.Lock()


def _pipeline(gen: GenerateConfig) -> LivoPipeline:
    """The generator of `gen`, loaded once per process (only the fields that change the loaded model key it)."""
    return _loaded_pipeline(gen.base_model, gen.torch_dtype(), gen.sampler, gen.channels_last, gen.compile_unet)


@lru_cache(maxsize=1)  # one pipeline on the device at a time
def _loaded_pipeline(
    base_model: str, dtype: torch.dtype, sampler: str, channels_last: bool, compile_unet: bool
) -> LivoPipeline:
    base = load_base_pipeline(base_model, dtype=dtype, sampler=sampler)
    base.unet = tune_unet(base.unet, channels_last, compile_unet)
    return LivoPipeline(base)


def stage_prompts(config: BuildConfig) -> Path:
    """Prompts longer than the base model's text encoder reads become failed rows, with the reason."""
    tokenizer = load_tokenizer(config.generate.base_model)
    return collect_prompts(config.prompts, Path(config.out_dir) / "prompts.parquet", tokenizer=tokenizer)


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
        pipeline = _pipeline(gen)
        return generate_shard(pipeline, shard, Path(config.out_dir), gen.identity(), gen.settings())


def judgments_path(images_path: Path, judges: str) -> Path:
    """Where the JUDGMENTS of an images shard by the judges `judges` (a `JudgePool.key`) are written: beside it."""
    return images_path.with_name(
        images_path.name.replace("images-", "judgments-").replace(".parquet", f"-{judges}.parquet")
    )


@lru_cache(maxsize=8)
def _judges_key(world: str, judges: JudgeConfig) -> str:
    return JudgePool(world, judges).key(load_principles())


def shard_outputs(config: BuildConfig, shard: Sequence[ImageRequest]) -> tuple[Path, Path]:
    """The images and judgments tables of a shard, whoever generates it: names come from its content and from the
    generator's and judges' identities."""
    gen = config.generate
    images = shard_path(Path(config.out_dir), shard, gen.identity(), gen.settings())
    return images, judgments_path(images, _judges_key(gen.world, config.judges))


def shard_files(config: BuildConfig, shard: Sequence[ImageRequest]) -> list[Path]:
    """Every file a generated and judged shard wrote: its two tables, its PNGs and their latents."""
    root, (images, judgments) = Path(config.out_dir), shard_outputs(config, shard)
    shas = {row["image_sha256"]: row["image_path"] for row in read_images([images])}
    latents = LatentCache(root, config.generate.identity().vae)
    return [images, judgments, *(root / path for path in shas.values()), *(latents.path(sha) for sha in shas)]


def stage_judge(config: BuildConfig, images_path: Path) -> Path:
    """JUDGMENTS of one images shard, written beside it; a shard already judged is not judged again."""
    pool = JudgePool(config.generate.world, config.judges)
    out = judgments_path(images_path, pool.key(load_principles()))
    if out.is_file():
        return out
    with _device:
        rows = judge_images(read_images([images_path]), load_principles(), pool, Path(config.out_dir))
    return write_table(rows, out, JUDGMENTS, meta={"images": images_path.name})


def prompt_rows(prompts_path: Path) -> dict[str, dict]:
    """Each prompt id's family and group (what debias plans and splits need of the prompts table)."""
    table = read_table(prompts_path, PROMPTS).select(["prompt_id", "family", "group"])
    return {row["prompt_id"]: row for row in table.to_pylist()}


def debias_plans(
    config: BuildConfig, prompts: dict[str, dict], images: Sequence[dict], judgments: Sequence[dict]
) -> dict[tuple[str, str | None], BiasPlan]:
    """The bias plans, measured on the judged violating (base model) images of the train split's prompts, so that no
    test prompt decides p or the value share (a principle without train images falls back to all its images)."""
    family_of = {prompt_id: row["family"] for prompt_id, row in prompts.items()}
    violating = [row for row in images if row["role"] == "violating" and row["status"] == "ok"]
    train = [r for r in violating if split_of(prompts.get(r["prompt_id"], r), config.split) == "train"]
    d, principles = config.debias, load_principles()
    measured = bias_plans(train, judgments, principles, family_of, d.value_share, d.min_family_images)
    fallback = bias_plans(violating, judgments, principles, family_of, d.value_share, d.min_family_images)
    planned = {principle_id for principle_id, _ in measured}
    return measured | {key: plan for key, plan in fallback.items() if key[0] not in planned}


def plan_second_phase(
    config: BuildConfig, prompts_path: Path, image_paths: Sequence[Path], judgment_paths: Sequence[Path]
) -> list[list[ImageRequest]]:
    """Shards of the bias aligned images: for each judged violating image of an over-represented class, a target
    class drawn from the debias plan."""
    images, prompts = read_images(image_paths), prompt_rows(prompts_path)
    judgments = [row for path in judgment_paths for row in read_table(path, JUDGMENTS).to_pylist()]
    plans = debias_plans(config, prompts, images, judgments)
    violating = [row for row in images if row["role"] == "violating"]
    family_of = {prompt_id: row["family"] for prompt_id, row in prompts.items()}
    requests = bias_aligned_requests(violating, judgments, load_principles(), plans, family_of)
    return shard_requests(requests, config.generate.shard_size)


def stage_write_dataset(
    config: BuildConfig,
    prompts_path: Path,
    annotations_path: Path,
    image_paths: Sequence[Path],
    judgment_paths: Sequence[Path],
) -> tuple[Path, dict]:
    """Pair, split by template item, write pairs.parquet (with the debias plans) and README.md, validate; returns
    the path and counts."""
    root, principles = Path(config.out_dir), load_principles()
    prompts = {r["prompt_id"]: r for r in read_table(prompts_path, PROMPTS).to_pylist()}
    info = {
        row["prompt_id"]: PromptInfo(
            prompts[row["prompt_id"]]["source"] if row["prompt_id"] in prompts else "unknown",
            split_of(prompts.get(row["prompt_id"], row), config.split),
            row["annotator"],
            row["annotator_version"],
            row["template_version"],
            prompts.get(row["prompt_id"], {}).get("family"),
        )
        for row in read_table(annotations_path, ANNOTATIONS).to_pylist()
    }
    images = read_images(image_paths)
    judgments = [row for path in judgment_paths for row in read_table(path, JUDGMENTS).to_pylist()]
    plans = debias_plans(config, prompts, images, judgments)
    rows = pair_images(images, judgments, principles, info, plans)
    counts = {
        "images": len(images),
        "judged_ok": sum(j["status"] == "ok" for j in judgments),
        "judged_failed": sum(j["status"] != "ok" for j in judgments),
        "pairs": len(rows),
    }
    path = write_pairs(
        (rows[i : i + 10_000] for i in range(0, len(rows), 10_000)),
        root,
        meta={
            "config": config.model_dump(mode="json"),
            "counts": counts,
            "debias_plans": [plan.as_dict() for plan in plans.values()],
        },
    )
    report = validate_dataset(root)
    if not report.ok:
        raise ValueError(f"dataset {root} failed validation: {report.problems[:5]}")
    write_hf_splits(root)  # data/<split>-*.parquet: what datasets.load_dataset(root) and the Hub read
    (root / "README.md").write_text(dataset_card(root))
    return path, counts


def failure_summary(
    out_dir: str | Path, image_paths: Sequence[Path | str], judgment_paths: Sequence[Path | str]
) -> list[dict]:
    """Per stage (prompts, annotate, generate, judge): rows, failed rows and the commonest reasons, over this run's
    tables (not the tables other models or judges left in the shards folder). Failed rows are kept in the tables,
    never dropped; this is what a run reports of them."""
    root = Path(out_dir)
    stages = (
        ("prompts", [root / "prompts.parquet"], PROMPTS),
        ("annotate", [root / "annotations.parquet"], ANNOTATIONS),
        ("generate", image_paths, IMAGES),
        ("judge", judgment_paths, JUDGMENTS),
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
    second = [stage_generate(config, shard) for shard in plan_second_phase(config, prompts, images, judgments)]
    judgments += [stage_judge(config, path) for path in second]
    return stage_write_dataset(config, prompts, annotations, images + second, judgments)
