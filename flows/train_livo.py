"""train-livo: check the dataset → train (LiVO, and DPO as a baseline) → evaluate every method → report → export."""

import base64
import re
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.mirrors import push, working_copy
from livo_core.report import training_summary
from livo_core.train_livo import TrainLivoConfig, methods_of
from tasks.train import in_run


@flow(name="train-livo")
def train_livo(config: TrainLivoConfig = TrainLivoConfig()) -> str:
    """Train value encoders on `config.dataset`, compare them with the baselines; returns the report's path.

    A re-run with the same config reuses finished stages; a killed run's training resumes from its checkpoint.
    """
    mirrors, config = working_copy(config, "dataset", "out_dir")
    out = mirrors.get("out_dir")
    run = in_run(config)
    run.check_dataset(config)
    checkpoints = {loss: run.train_value_encoder(config, loss, out) for loss in config.losses}
    train_dirs = {loss: Path(config.train_config(loss).output_dir) for loss in checkpoints}
    create_table_artifact(training_summary(train_dirs), key="training", description="last logged step of each loss")
    evaluations = [run.evaluate_method(config, method) for method in methods_of(config, checkpoints)]
    report = run.write_report(config, evaluations, checkpoints)
    export = run.export_value_encoder(config, checkpoints[config.losses[0]], report)
    create_markdown_artifact(_inline_images(report), key="livo-report", description=f"{report}; export: {export}")
    push(out)
    return f"{out.url}/{report.relative_to(out.local).as_posix()}" if out else str(report)


def _inline_images(report: Path) -> str:
    """The report's markdown with its PNGs inlined as data URIs, so the Prefect UI shows them without a file server."""

    def inline(match: re.Match) -> str:
        png = base64.b64encode((report.parent / match.group(2)).read_bytes()).decode()
        return f"![{match.group(1)}](data:image/png;base64,{png})"

    return re.sub(r"!\[([^\]]*)\]\(([^)]+\.png)\)", inline, report.read_text())
