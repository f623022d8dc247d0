"""prefect.yaml: every deployment's parameters are valid configs of its flow; the trigger cannot loop."""

from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from flows.build_dataset import generate_shard
from livo_core.build import BuildConfig
from livo_core.generation import ImageRequest
from livo_core.train_livo import TrainLivoConfig

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"
CONFIGS = {"flows/build_dataset.py:build_dataset": BuildConfig, "flows/train_livo.py:train_livo": TrainLivoConfig}
SHARD_FLOW = "flows/build_dataset.py:generate_shard"  # parameters come from build-dataset, per shard
LIVO_FLOW = "flows/livo.py:livo"  # the whole DAG: parameters build (BuildConfig) and train (TrainLivoConfig)
DEPLOYMENTS = yaml.safe_load(PREFECT_YAML.read_text())["deployments"]


@pytest.mark.parametrize(
    "deployment",
    [d for d in DEPLOYMENTS if d["entrypoint"] in CONFIGS],
    ids=lambda d: f"{d['entrypoint']}:{d['name']}",
)
def test_deployment_parameters_are_valid_configs(deployment):
    config = CONFIGS[deployment["entrypoint"]](**deployment["parameters"].get("config", {}))
    if deployment["name"] == "sd15":
        assert "sd15" in (getattr(config, "base_model", None) or config.generate.base_model)


def test_every_flow_has_a_local_and_a_gpu_deployment():
    pools = {(d["entrypoint"], d["work_pool"]["name"]) for d in DEPLOYMENTS}
    assert pools == {(e, pool) for e in [*CONFIGS, SHARD_FLOW, LIVO_FLOW] for pool in ("local", "gpu")}


@pytest.mark.parametrize(
    "deployment", [d for d in DEPLOYMENTS if d["entrypoint"] == LIVO_FLOW], ids=lambda d: d["name"]
)
def test_livo_deployment_parameters_are_valid_configs(deployment):
    build = BuildConfig(**deployment["parameters"].get("build", {}))
    train = TrainLivoConfig(**deployment["parameters"].get("train", {}))
    if deployment["name"] == "sd15":
        assert build.generate.base_model == train.base_model == "sd15"


def test_a_shard_sent_as_json_is_a_valid_generate_shard_call():
    """What build-dataset's fan-out sends (JSON) comes back as the flow's typed parameters."""
    shard = [ImageRequest("p1", "gender_equality", "violating", "a photo of a doctor", 7)]
    sent = {"config": BuildConfig(out_dir="/data/x").model_dump(mode="json"), "shard": [asdict(r) for r in shard]}

    received = generate_shard.validate_parameters(sent)

    assert received["config"] == BuildConfig(out_dir="/data/x") and received["shard"] == shard


def test_train_trigger_listens_to_build_dataset_only():
    (train_local,) = [d for d in DEPLOYMENTS if d["entrypoint"].endswith("train_livo") and d["name"] == "local"]
    (trigger,) = train_local["triggers"]
    assert trigger["match_related"]["prefect.resource.name"] == "build-dataset"  # not train-livo: no loop
    assert trigger["expect"] == ["prefect.flow-run.Completed"] and trigger["enabled"] is False
