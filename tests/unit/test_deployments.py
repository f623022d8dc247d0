"""prefect.yaml: every deployment's parameters are valid configs of its flow; the trigger cannot loop."""

from pathlib import Path

import pytest
import yaml

from livo_core.build import BuildConfig
from livo_core.train_livo import TrainLivoConfig

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"
CONFIGS = {"flows/build_dataset.py:build_dataset": BuildConfig, "flows/train_livo.py:train_livo": TrainLivoConfig}
DEPLOYMENTS = yaml.safe_load(PREFECT_YAML.read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: f"{d['entrypoint']}:{d['name']}")
def test_deployment_parameters_are_valid_configs(deployment):
    config = CONFIGS[deployment["entrypoint"]](**deployment["parameters"].get("config", {}))
    if deployment["name"] == "sd15":
        assert "sd15" in (getattr(config, "base_model", None) or config.generate.base_model)


def test_every_flow_has_a_local_and_a_gpu_deployment():
    pools = {(d["entrypoint"], d["work_pool"]["name"]) for d in DEPLOYMENTS}
    assert pools == {(e, pool) for e in CONFIGS for pool in ("local", "gpu")}


def test_train_trigger_listens_to_build_dataset_only():
    (train_local,) = [d for d in DEPLOYMENTS if d["entrypoint"].endswith("train_livo") and d["name"] == "local"]
    (trigger,) = train_local["triggers"]
    assert trigger["match_related"]["prefect.resource.name"] == "build-dataset"  # not train-livo: no loop
    assert trigger["expect"] == ["prefect.flow-run.Completed"] and trigger["enabled"] is False
