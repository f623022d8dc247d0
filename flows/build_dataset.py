"""build-dataset: prompts → annotations → first-phase images → judgments → bias aligned images → judgments → pairs."""

from collections import Counter
from pathlib import Path

from prefect import flow, unmapped
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import as_completed

from livo_core.build import BuildConfig
from livo_core.dataset import SPLITS
from livo_core.schema import PAIRS, read_table
from tasks.build import in_dataset


@flow(name="build-dataset")
def build_dataset(config: BuildConfig = BuildConfig()) -> str:
    """Build the preference dataset in `config.out_dir`; a re-run with the same config reuses every finished stage."""
    run = in_dataset(config)  # the build tasks, their results persisted in <out_dir>/.prefect-results
    prompts = run.collect_prompts(config)
    annotations = run.annotate_prompts(config, prompts)
    images, judgments = _generate_and_judge(run, config, run.plan_images(config, annotations), "first phase")
    bias = run.plan_bias_images(config, images, judgments)
    bias_images, bias_judgments = _generate_and_judge(run, config, bias, "bias aligned")
    pairs = run.write_dataset(config, prompts, annotations, images + bias_images, judgments + bias_judgments)
    _report(pairs)
    return str(pairs)


def _generate_and_judge(run, config: BuildConfig, shards, phase: str) -> tuple[list[Path], list[Path]]:
    """Each shard is judged as soon as it is generated; the progress artifact counts judged shards."""
    progress = create_progress_artifact(0.0, description=f"{phase}: {len(shards)} shards generated and judged")
    images = run.generate_images.map(unmapped(config), shards)
    judgments = run.judge_images.map(unmapped(config), images)
    for done, _ in enumerate(as_completed(judgments), 1):
        update_progress_artifact(progress, 100 * done / len(shards))
    update_progress_artifact(progress, 100.0)
    return images.result(), judgments.result()


def _report(pairs: Path) -> None:
    """A table of pairs per principle and split, and the dataset card, as artifacts of the flow run."""
    rows = read_table(pairs, PAIRS).select(["principle_id", "split"]).to_pylist()
    counts = Counter((row["principle_id"], row["split"]) for row in rows)
    table = [{"principle": p, **{s: counts[(p, s)] for s in SPLITS}} for p in sorted({p for p, _ in counts})]
    create_table_artifact(table, key="dataset-counts", description=f"{len(rows)} pairs of {pairs}")
    create_markdown_artifact((pairs.parent / "README.md").read_text(), key="dataset-card", description=str(pairs))
