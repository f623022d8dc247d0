"""train-livo: check the dataset → train (LiVO, and DPO as a baseline) → evaluate every method → report → export."""

import base64
import re
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from livo_core.remote import Mirror, mirror_of
from livo_core.report import training_summary
from livo_core.train_livo import TrainLivoConfig, methods_of
from tasks.train import in_run


@flow(name="train-livo")
def train_livo(config: TrainLivoConfig = TrainLivoConfig()) -> str:
    """Train value encoders on `config.dataset`, compare them with the baselines; returns the report's path.

    A re-run with the same config reuses finished stages; a killed run's training resumes from its checkpoint.
    """
    out, config = _working_copy(config)
    run = in_run(config)
    run.check_dataset(config)
    checkpoints = {loss: run.train_value_encoder(config, loss, out) for loss in config.losses}
    train_dirs = {loss: Path(config.train_config(loss).output_dir) for loss in checkpoints}
    create_table_artifact(training_summary(train_dirs), key="training", description="last logged step of each loss")
    evaluations = [run.evaluate_method(config, method) for method in methods_of(config, checkpoints)]
    report = run.write_report(config, evaluations, checkpoints)
    export = run.export_value_encoder(config, checkpoints[config.losses[0]], report)
    create_markdown_artifact(_inline_images(report), key="livo-report", description=f"{report}; export: {export}")
    if out:
        get_run_logger().info("%s: %d files pushed", out.url, out.push())
        return f"{out.url}/{report.relative_to(out.local).as_posix()}"
    return str(report)


def _working_copy(config: TrainLivoConfig) -> tuple[Mirror | None, TrainLivoConfig]:
    """`dataset` and `out_dir` given as fsspec URLs are pulled into local mirrors, which the stages use; returns
    the out_dir's mirror (to push to) or None, and the config pointing at the local folders."""
    update = {}
    for field in ("dataset", "out_dir"):
        mirror = mirror_of(getattr(config, field))
        if mirror:
            get_run_logger().info("%s: %d files pulled into %s", mirror.url, mirror.pull(), mirror.local)
            update[field] = str(mirror.local)
    return mirror_of(config.out_dir), config.model_copy(update=update)


def _inline_images(report: Path) -> str:
    """The report's markdown with its PNGs inlined as data URIs, so the Prefect UI shows them without a file server."""

    def inline(match: re.Match) -> str:
        png = base64.b64encode((report.parent / match.group(2)).read_bytes()).decode()
        return f"![{match.group(1)}](data:image/png;base64,{png})"

    return re.sub(r"!\[([^\]]*)\]\(([^)]+\.png)\)", inline, report.read_text())
