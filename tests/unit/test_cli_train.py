"""`livo train --config`: the file's fields count, options given override them, bad files name themselves."""

import pytest
from typer.testing import CliRunner

from livo_core import training
from livo_core.cli import app


@pytest.fixture
def trained(monkeypatch, tmp_path):
    """The TrainConfig that `livo train` built (the trainer itself is tested in tests/training), run where `data` is
    a dataset folder (the command checks it has pairs.parquet before anything loads)."""
    seen = []
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "pairs.parquet").write_text("")

    class Recorder:
        def __init__(self, config):
            seen.append(config)

        def fit(self):
            return "checkpoint-0000001"

    monkeypatch.setattr(training, "Trainer", Recorder)
    return seen


def _train(*args: str):
    return CliRunner().invoke(app, ["train", "data", "out", *args], env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"})


def test_config_file_fields_are_used_and_options_override_them(tmp_path, trained):
    config = tmp_path / "train.yaml"
    config.write_text("max_steps: 7\nlearning_rate: 0.01\nbatch_size: 2\n")

    assert _train("--config", str(config), "--batch-size", "4").exit_code == 0

    (built,) = trained
    assert (built.max_steps, built.learning_rate, built.batch_size) == (7, 0.01, 4)
    assert (built.dataset, built.output_dir) == ("data", "out")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected a mapping of TrainConfig fields"),
        ("- 1\n- 2\n", "got list"),
        ("max_steps: [1\n", "not valid YAML or JSON"),
        ("max_step: 7\n", "max_step"),
    ],
)
def test_a_bad_config_file_is_named_with_what_is_wrong(tmp_path, trained, text, message):
    config = tmp_path / "train.yaml"
    config.write_text(text)

    result = _train("--config", str(config))

    assert result.exit_code == 2 and not trained
    output = " ".join(result.output.split())
    assert "train.yaml" in output and message in output


def test_a_missing_config_file_is_named(tmp_path, trained):
    result = _train("--config", str(tmp_path / "nope.yaml"))

    assert result.exit_code == 2 and "nope.yaml" in result.output and not trained
