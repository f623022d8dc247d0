"""livo: the whole DAG in one flow run, build-dataset then train-livo as its subflows (each keeps its parameters and
its stages' caching: a re-run reuses every finished stage of both)."""

from prefect import flow, get_run_logger

from flows.build_dataset import build_dataset
from flows.train_livo import train_livo
from livo_core.build import BuildConfig
from livo_core.train_livo import TrainLivoConfig


@flow(name="livo")
def livo(
    build: BuildConfig = BuildConfig(),
    train: TrainLivoConfig = TrainLivoConfig(),
    shard_deployment: str | None = None,
) -> str:
    """Build the preference dataset, then train and evaluate value encoders on it; returns the report's path.

    `train.dataset` is always the dataset this run builds (`build.out_dir`): a different one is replaced, with a
    warning (the train-livo deployment trains on any dataset); `shard_deployment` goes to build-dataset."""
    if train.dataset != build.out_dir:
        get_run_logger().warning(
            "train.dataset %r replaced by build.out_dir %r: the livo flow trains on the dataset it builds",
            train.dataset,
            build.out_dir,
        )
    built = build_dataset(build, shard_deployment, return_state=True)
    built.result()  # a failed build stops here
    return train_livo(train.model_copy(update={"dataset": build.out_dir}), wait_for=[built])  # the graph's edge
