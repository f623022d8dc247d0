"""Defaults by base model: shapes trains and evaluates with its own recipe, every other base with the reference's."""

import pytest
from typer.testing import CliRunner

from livo_core.cli import app
from livo_core.config import TrainConfig
from livo_core.train_livo import TrainLivoConfig


def test_train_livo_on_sd15_gets_the_reference_recipe_and_protocol():
    config = TrainLivoConfig(base_model="sd15", world="sd15")
    t, e = config.training, config.evaluation
    assert (t.learning_rate, t.batch_size, t.max_steps) == (1e-6, 8, 15000)
    assert (e.guidance_scale, e.steps, e.images_per_prompt) == (7.5, 25, 50)
    shapes = TrainLivoConfig()
    assert (shapes.training.learning_rate, shapes.evaluation.guidance_scale, shapes.evaluation.steps) == (1e-3, 7.5, 12)


def test_a_partial_recipe_keeps_the_profiles_other_fields():
    assert TrainLivoConfig(training={"max_steps": 5}).training.learning_rate == 1e-3
    assert TrainLivoConfig(base_model="sd15", training={"max_steps": 5}).training.learning_rate == 1e-6
    config = TrainLivoConfig(base_model="sd15", evaluation={"seeds": (0, 1)})
    assert config.evaluation.guidance_scale == 7.5
    assert TrainLivoConfig.model_validate(config.model_dump(mode="json")) == config  # a dumped config round-trips


@pytest.mark.parametrize(("base_model", "lr"), [("shapes", 1e-3), ("sd15", 1e-6)])
def test_train_config_defaults_by_base_model(base_model, lr):
    assert TrainConfig(dataset="d", output_dir="o", base_model=base_model).learning_rate == lr
    assert TrainConfig(dataset="d", output_dir="o", base_model=base_model, learning_rate=5e-5).learning_rate == 5e-5


def test_livo_train_on_sd15_uses_the_reference_recipe(tmp_path, monkeypatch):
    seen = {}

    class Stop(Exception):
        pass

    def capture(config):
        seen["config"] = config
        raise Stop

    monkeypatch.setattr("livo_core.training.Trainer", capture)
    monkeypatch.setattr("livo_core.cli._require_base_model", lambda name: name)  # no SD1.5 weights here
    (tmp_path / "pairs.parquet").write_text("")
    result = CliRunner().invoke(app, ["train", str(tmp_path), str(tmp_path / "out"), "--base-model", "sd15"])
    assert isinstance(result.exception, Stop)
    config = seen["config"]
    assert (config.learning_rate, config.batch_size, config.max_steps) == (1e-6, 8, 15000)
