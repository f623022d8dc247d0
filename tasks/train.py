"""The train-livo tasks: each calls one `livo_core.train_livo` stage and returns paths.

Results are persisted in `<out_dir>/.prefect-results` and cached on the inputs, the task source, the livo_core
version and the config fingerprint (as in tasks/build.py). Training is never cached half-way: a retry, or a new run
of a killed one, calls the trainer again, which resumes from the newest checkpoint.
"""

from pathlib import Path
from types import SimpleNamespace

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from livo_core import train_livo as stages
from livo_core.checkpoint import latest_checkpoint
from livo_core.evaluation import Method
from livo_core.remote import Mirror
from livo_core.train_livo import TrainLivoConfig
from tasks.build import CACHE, RESULTS_DIR

STAGE = {"cache_policy": CACHE, "persist_result": True}


@task
def check_dataset(config: TrainLivoConfig) -> dict:
    counts = stages.stage_check_dataset(config)
    get_run_logger().info("dataset %s: %s", config.dataset, counts)
    return counts


@task(**STAGE, tags=["gpu"], retries=2, retry_delay_seconds=10)
def train_value_encoder(config: TrainLivoConfig, loss: str, seed: int, out: Mirror | None = None) -> Path:
    """`out`: the remote run folder that each new checkpoint is pushed to (a run resumed elsewhere pulls it)."""
    logger, steps = get_run_logger(), config.training.max_steps
    train_dir = Path(config.train_config(loss, seed).output_dir)
    progress = create_progress_artifact(0.0, description=f"{loss} seed {seed}: {steps} training steps")
    pushed = [latest_checkpoint(train_dir)]

    def on_log(record: dict) -> None:
        update_progress_artifact(progress, 100 * record["step"] / steps)
        if record["step"] % (10 * config.training.log_every) == 0:
            logger.info("%s seed %d step %d: loss %.4f", loss, seed, record["step"], record["loss"])
        if out and (latest := latest_checkpoint(train_dir)) != pushed[0]:
            pushed[0] = latest
            logger.info("%s: %s, %d files pushed to %s", loss, pushed[0].name, out.push(), out.url)

    checkpoint = stages.stage_train(config, loss, seed, on_log)
    logger.info("%s seed %d: %s", loss, seed, checkpoint)
    return checkpoint


@task(**STAGE, tags=["gpu"], retries=1, retry_delay_seconds=10)
def evaluate_method(config: TrainLivoConfig, method: Method) -> Path:
    path = stages.stage_evaluate(config, method)
    get_run_logger().info("%s: %s", method.name, path)
    return path


@task(**STAGE, tags=["gpu"])
def red_team(config: TrainLivoConfig, checkpoints: stages.Checkpoints) -> Path | None:
    path = stages.stage_redteam(config, checkpoints)
    get_run_logger().info("red team: %s", path or "not run (redteam is None, or not the shapes world)")
    return path


@task(**STAGE)
def write_report(
    config: TrainLivoConfig, evaluations: list[Path], checkpoints: stages.Checkpoints, redteam: Path | None
) -> Path:
    return stages.stage_report(config, evaluations, checkpoints, redteam)


@task(**STAGE)
def export_value_encoder(config: TrainLivoConfig, checkpoint: Path, report: Path) -> Path:
    path = stages.stage_export(config, checkpoint, report)
    get_run_logger().info("exported: %s", path)
    return path


STAGES = (check_dataset, train_value_encoder, evaluate_method, red_team, write_report, export_value_encoder)


def in_run(config: TrainLivoConfig) -> SimpleNamespace:
    """The tasks above with their results persisted inside `config.out_dir` (see tasks.build.in_dataset)."""
    storage = Path(config.out_dir).resolve() / RESULTS_DIR
    return SimpleNamespace(**{stage.name: stage.with_options(result_storage=storage) for stage in STAGES})
