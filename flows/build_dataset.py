"""build-dataset: prompts → annotations → first-phase images → judgments → bias aligned images → judgments → pairs.

generate-shard: one shard generated and judged, the unit build-dataset fans out over the workers of a pool.
"""

import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.orchestration import get_client
from prefect.context import get_run_context
from prefect.deployments import run_deployment
from prefect.futures import as_completed

from flows.mirrors import push, working_copy
from flows.runners import task_runner
from flows.secrets import load_api_key
from livo_core.build import BuildConfig, failure_summary, shard_files, shard_outputs
from livo_core.dataset import SPLITS
from livo_core.generation import ImageRequest
from livo_core.remote import Mirror
from livo_core.schema import PAIRS, read_table
from tasks.build import in_dataset


@flow(name="build-dataset", task_runner=task_runner())
def build_dataset(config: BuildConfig = BuildConfig(), shard_deployment: str | None = None) -> str:
    """Build the preference dataset in `config.out_dir`; a re-run with the same config reuses every finished stage.

    `config.out_dir` may be an fsspec URL (s3://bucket/dataset): the stages work in a local mirror, pulled first
    and pushed after each phase. `shard_deployment` (e.g. `generate-shard/gpu`): each shard becomes a flow run of
    that deployment, so every worker of its pool generates and judges shards (one per GPU with `--limit 1`); by
    default this flow run generates them itself."""
    load_api_key(config.annotate.api_key_env)  # from the environment, else a Secret block (flows/secrets.py)
    mirrors, work = working_copy(config, "out_dir")
    mirror = mirrors.get("out_dir")
    run = in_dataset(work)  # the build tasks, their results persisted in <out_dir>/.prefect-results
    prompts = run.collect_prompts(work)
    annotations = run.annotate_prompts(work, prompts)
    stage = _fan_out(shard_deployment, config, mirror) if shard_deployment else _generate_and_judge
    images, judgments = stage(run, work, run.plan_images(work, annotations), "first phase")
    push(mirror)
    bias = run.plan_bias_images(work, prompts, images, judgments)
    bias_images, bias_judgments = stage(run, work, bias, "bias aligned")
    pairs = run.write_dataset(work, prompts, annotations, images + bias_images, judgments + bias_judgments)
    push(mirror)
    _report(pairs, images + bias_images, judgments + bias_judgments)
    return f"{config.out_dir}/pairs.parquet" if mirror else str(pairs)


@flow(name="generate-shard")
def generate_shard(config: BuildConfig, shard: list[ImageRequest]) -> str:
    """Generate and judge one shard of build-dataset (its tasks, cached in the dataset folder, as there); with a
    URL `out_dir`, push the shard's files to it."""
    mirrors, work = working_copy(config, "out_dir")
    run = in_dataset(work)
    judgments = run.judge_images(work, run.generate_images(work, shard))
    if "out_dir" in mirrors:
        mirrors["out_dir"].push(only=shard_files(work, shard))
    return str(judgments)


def _generate_and_judge(run, config: BuildConfig, shards, phase: str) -> tuple[list[Path], list[Path]]:
    """Each shard is judged as soon as it is generated; the progress artifact counts judged shards."""
    progress = create_progress_artifact(0.0, description=f"{phase}: {len(shards)} shards generated and judged")
    images = run.generate_images.map(unmapped(config), shards)
    judgments = run.judge_images.map(unmapped(config), images)
    for done, _ in enumerate(as_completed(judgments), 1):
        update_progress_artifact(progress, 100 * done / len(shards))
    update_progress_artifact(progress, 100.0)
    return images.result(), judgments.result()


def _fan_out(shard_deployment: str, sent: BuildConfig, mirror: Mirror | None, poll_s: float = 2.0):
    """A stage like `_generate_and_judge` whose shards run as flow runs of `shard_deployment`, on its workers.
    They get `sent`, the config as given (a URL out_dir: they push their files there, and we pull them)."""

    def stage(run, config: BuildConfig, shards, phase: str) -> tuple[list[Path], list[Path]]:
        outputs = [shard_outputs(config, shard) for shard in shards]
        todo = [
            (shard, images) for shard, (images, judged) in zip(shards, outputs, strict=True) if not judged.is_file()
        ]
        progress = create_progress_artifact(
            100 * (1 - len(todo) / max(len(shards), 1)),
            description=f"{phase}: {len(shards)} shards generated and judged by {shard_deployment} flow runs",
        )
        parent = get_run_context().flow_run
        runs = [
            run_deployment(
                shard_deployment,
                parameters={"config": sent.model_dump(mode="json"), "shard": [asdict(r) for r in shard]},
                timeout=0,
                idempotency_key=f"{parent.id}-{parent.run_count}-{images.stem}",
            )
            for shard, images in todo
        ]
        get_run_logger().info("%s: %d of %d shards sent to %s", phase, len(runs), len(shards), shard_deployment)
        _wait_for_shards([r.id for r in runs], len(shards) - len(todo), len(shards), progress, poll_s)
        if mirror:
            mirror.pull()
        missing = [str(judged) for _, judged in outputs if not judged.is_file()]
        if missing:
            raise RuntimeError(f"{len(missing)} shards completed without their judgments table, e.g. {missing[0]}")
        return [images for images, _ in outputs], [judged for _, judged in outputs]

    return stage


def _wait_for_shards(flow_run_ids: list, done: int, total: int, progress, poll_s: float) -> None:
    """Poll the shard flow runs until every one is final; any that did not complete fails the stage."""
    pending, failed = set(flow_run_ids), []
    with get_client(sync_client=True) as client:
        while pending:
            time.sleep(poll_s)
            for flow_run_id in list(pending):
                state = client.read_flow_run(flow_run_id).state
                if state is not None and state.is_final():
                    pending.discard(flow_run_id)
                    done += 1
                    if not state.is_completed():
                        failed.append(f"{flow_run_id} {state.name}: {state.message}")
            update_progress_artifact(progress, 100 * done / total)
    if failed:
        raise RuntimeError(f"{len(failed)} shard flow runs did not complete: {'; '.join(failed[:3])}")


def _report(pairs: Path, images: list, judgments: list) -> None:
    """Tables of pairs per principle and split and of failed rows per stage, and the dataset card, as artifacts of
    the flow run; a warning in its log when rows failed."""
    failures = failure_summary(pairs.parent, images, judgments)
    failed = {row["stage"]: row["failed"] for row in failures if row["failed"]}
    create_table_artifact(failures, key="build-failures", description=f"failed rows per stage: {failed or 'none'}")
    if failed:
        get_run_logger().warning("failed rows (kept in the tables, with reasons): %s", failed)
    rows = read_table(pairs, PAIRS).select(["principle_id", "split"]).to_pylist()
    counts = Counter((row["principle_id"], row["split"]) for row in rows)
    table = [{"principle": p, **{s: counts[(p, s)] for s in SPLITS}} for p in sorted({p for p, _ in counts})]
    create_table_artifact(table, key="dataset-counts", description=f"{len(rows)} pairs of {pairs}")
    create_markdown_artifact((pairs.parent / "README.md").read_text(), key="dataset-card", description=str(pairs))
