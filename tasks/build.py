"""The build-dataset tasks: each takes the config plus input paths, calls one `livo_core.build` stage function and
returns output paths.

Results (paths, request shards) are persisted in `<out_dir>/.prefect-results` (see `in_dataset`) and cached on the
inputs, the task source, `livo_core.__version__` and `config.fingerprint()`, so a re-run with the same parameters
skips every finished stage, across runs. The stage functions are idempotent themselves (a shard whose table exists
is skipped), so even a cache miss generates and judges nothing twice.
"""

from pathlib import Path
from types import SimpleNamespace

from prefect import get_run_logger, task
from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy

import livo_core
from livo_core import build
from livo_core.build import BuildConfig
from livo_core.generation import ImageRequest

RESULTS_DIR = ".prefect-results"


def _release_key(context, inputs: dict) -> str:
    """A new livo_core release, another config, or changed data or prompt files recompute the stage."""
    return f"{livo_core.__version__}-{inputs['config'].cache_key()}"


CACHE = INPUTS + TASK_SOURCE + CachePolicy.from_cache_key_fn(_release_key)
STAGE = {"cache_policy": CACHE, "persist_result": True}
# GPU work: retried (CUDA OOM, a busy device), tagged so that `prefect concurrency-limit create gpu 1` serialises it
GPU = {**STAGE, "tags": ["gpu"], "retries": 2, "retry_delay_seconds": [30, 120]}


@task(**STAGE)
def collect_prompts(config: BuildConfig) -> Path:
    path = build.stage_prompts(config)
    get_run_logger().info("prompts: %s", path)
    return path


@task(**STAGE, retries=2, retry_delay_seconds=[30, 120])  # the LLM endpoint, when one is configured
def annotate_prompts(config: BuildConfig, prompts: Path) -> Path:
    path = build.stage_annotate(config, prompts)
    get_run_logger().info("annotations: %s", path)
    return path


@task(**STAGE)
def plan_images(config: BuildConfig, annotations: Path) -> list[list[ImageRequest]]:
    shards = build.plan_first_phase(config, annotations)
    get_run_logger().info("first phase: %d images in %d shards", sum(map(len, shards)), len(shards))
    return shards


@task(**GPU)
def generate_images(config: BuildConfig, shard: list[ImageRequest]) -> Path:
    path = build.stage_generate(config, shard)
    get_run_logger().info("%d images: %s", len(shard), path)
    return path


@task(**GPU)
def judge_images(config: BuildConfig, images: Path) -> Path:
    path = build.stage_judge(config, images)
    get_run_logger().info("judgments: %s", path)
    return path


@task(**STAGE)
def plan_bias_images(
    config: BuildConfig, prompts: Path, images: list[Path], judgments: list[Path]
) -> list[list[ImageRequest]]:
    shards = build.plan_second_phase(config, prompts, images, judgments)
    get_run_logger().info("bias aligned: %d images in %d shards", sum(map(len, shards)), len(shards))
    return shards


@task(**STAGE)
def write_dataset(
    config: BuildConfig, prompts: Path, annotations: Path, images: list[Path], judgments: list[Path]
) -> Path:
    path, counts = build.stage_write_dataset(config, prompts, annotations, images, judgments)
    get_run_logger().info("dataset: %s %s", path, counts)
    return path


STAGES = (
    collect_prompts,
    annotate_prompts,
    plan_images,
    generate_images,
    judge_images,
    plan_bias_images,
    write_dataset,
)


def in_dataset(config: BuildConfig) -> SimpleNamespace:
    """The tasks above with their results persisted inside `config.out_dir`: the cache lives and dies with the
    dataset, so a deleted dataset is rebuilt rather than 'restored' as paths to files that are gone."""
    storage = Path(config.out_dir).resolve() / RESULTS_DIR  # a Path: local storage, no block to save server-side
    return SimpleNamespace(**{stage.name: stage.with_options(result_storage=storage) for stage in STAGES})
