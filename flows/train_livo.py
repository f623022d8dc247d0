"""train-livo: check the dataset → train (LiVO, and DPO as a baseline; one run per training seed) → evaluate every
method → red team (shapes world) → report → export."""

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.mirrors import push, working_copy
from livo_core.report import inline_figures, training_summary
from livo_core.train_livo import TrainLivoConfig, by_loss, methods_of, train_dirs
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
    checkpoints = by_loss(config, [run.train_value_encoder(config, loss, seed, out) for loss, seed in config.runs()])
    create_table_artifact(
        training_summary(train_dirs(config, checkpoints)), key="training", description="last logged step of each run"
    )
    evaluations = [run.evaluate_method(config, method) for method in methods_of(config, checkpoints)]
    report = run.write_report(config, evaluations, checkpoints, run.red_team(config, checkpoints))
    export = run.export_value_encoder(config, checkpoints[config.losses[0]][config.training_seeds[0]], report)
    create_markdown_artifact(inline_figures(report), key="livo-report", description=f"{report}; export: {export}")
    push(out)
    return f"{out.url}/{report.relative_to(out.local).as_posix()}" if out else str(report)
