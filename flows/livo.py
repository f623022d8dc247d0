"""livo: the whole DAG in one flow run, build-dataset then train-livo as its subflows (each keeps its parameters and
its stages' caching: a re-run reuses every finished stage of both)."""

from prefect import flow

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

    `train.dataset` is the dataset this run builds (`build.out_dir`); `shard_deployment` goes to build-dataset."""
    if train.dataset != build.out_dir and "dataset" in train.model_fields_set:
        raise ValueError(
            f"train.dataset {train.dataset!r} is not build.out_dir {build.out_dir!r}: the livo flow trains on the "
            "dataset it builds; leave train.dataset unset, or run the train-livo deployment on another dataset"
        )
    build_dataset(build, shard_deployment)
    return train_livo(train.model_copy(update={"dataset": build.out_dir}))
