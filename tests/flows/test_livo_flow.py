"""The parent flow `livo` (deployment livo/local): build-dataset then train-livo as its subflows, one DAG."""

from pathlib import Path

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.context import get_run_context

import flows.livo
from livo_core import infra
from livo_core.build import BuildConfig
from livo_core.train_livo import TrainLivoConfig

REPO = Path(__file__).resolve().parents[2]


def test_the_main_job_is_the_livo_local_deployment_beside_the_halves():
    names = infra.deployment_names(REPO, "local")
    assert names[0] == "livo/local"  # the README's one command
    assert {"build-dataset/local", "train-livo/local"} <= set(names)


@pytest.fixture
def subflows(monkeypatch):
    """Stand-ins for the two halves (each tested on its own in test_build_flow.py and test_train_flow.py): they
    record what they got, and in which flow run they ran."""
    calls = []

    def record(name):
        context = get_run_context()
        calls.append((name, context.flow_run.id, context.flow_run.parent_task_run_id, context.parameters))

    @flow(name="build-dataset")
    def build_dataset(config: BuildConfig, shard_deployment: str | None = None) -> str:
        record("build-dataset")
        return f"{config.out_dir}/pairs.parquet"

    @flow(name="train-livo")
    def train_livo(config: TrainLivoConfig) -> str:
        record("train-livo")
        return f"{config.out_dir}/report/report.md"

    monkeypatch.setattr(flows.livo, "build_dataset", build_dataset)
    monkeypatch.setattr(flows.livo, "train_livo", train_livo)
    return calls


def test_livo_runs_build_then_train_on_the_dataset_it_built(prefect_harness, subflows, tmp_path):
    build = BuildConfig(out_dir=str(tmp_path / "dataset"))
    train = TrainLivoConfig(out_dir=str(tmp_path / "run"), training_seeds=(3,))
    report = flows.livo.livo(build, train)
    assert report == f"{tmp_path / 'run'}/report/report.md"
    (first, build_run, build_parent, build_params), (second, _, train_parent, train_params) = subflows
    assert (first, second) == ("build-dataset", "train-livo")
    assert build_params["config"] == build
    assert train_params["config"].dataset == build.out_dir and train_params["config"].training_seeds == (3,)
    with get_client(sync_client=True) as client:  # both are subflow runs of one livo flow run: one graph in the UI
        parents = {client.read_task_run(task_run).flow_run_id for task_run in (build_parent, train_parent)}
        (livo_run,) = parents
        assert client.read_flow_run(livo_run).name and client.read_flow_run(build_run).parent_task_run_id
        waits_on = client.read_task_run(train_parent).task_inputs["wait_for"]  # the edge build -> train
        assert waits_on, "train-livo does not wait on build-dataset: no edge in the run graph"


def test_train_always_gets_the_dataset_the_run_built(prefect_harness, subflows, tmp_path):
    build = BuildConfig(out_dir=str(tmp_path / "dataset"))
    flows.livo.livo(build, TrainLivoConfig(dataset=str(tmp_path / "other")))
    assert subflows[1][3]["config"].dataset == build.out_dir
