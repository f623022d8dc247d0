"""`livo generate`: the retriever picks the value, a grid is saved; bad input names the fix."""

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from livo_core.cli import app
from livo_core.models.loading import load_base_pipeline
from livo_core.models.value_encoder import ValueEncoder


@pytest.fixture(scope="module")
def encoder_dir(tiny_pipeline_dir, tmp_path_factory):
    base = load_base_pipeline(str(tiny_pipeline_dir), device="cpu")
    out = tmp_path_factory.mktemp("encoder")
    ValueEncoder.from_text_encoder(base.text_encoder, base.tokenizer).save_pretrained(out)
    return out


def _generate(tiny_pipeline_dir, encoder_dir, out, *extra):
    args = ["generate", *extra, "--value-encoder", str(encoder_dir), "--base-model", str(tiny_pipeline_dir)]
    result = CliRunner().invoke(app, [*args, "--n", "4", "--out", str(out)])
    return result.exit_code, " ".join(result.output.split())  # rich wraps long lines


def test_generate_retrieves_the_value_and_saves_a_grid(tiny_pipeline_dir, encoder_dir, tmp_path):
    code, output = _generate(tiny_pipeline_dir, encoder_dir, tmp_path / "grid.png", "a bloody red circle")
    assert code == 0, output
    assert "principle: bloody_inappropriate (keyword" in output
    assert "value per image: " + ", ".join(["bloody_inappropriate"] * 4) in output
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (32 * 4, 4 * 32 * 4, 3)  # one row of 4 images, enlarged 4x


def test_generate_without_applicable_value_uses_none(tiny_pipeline_dir, encoder_dir, tmp_path):
    code, output = _generate(tiny_pipeline_dir, encoder_dir, tmp_path / "grid.png", "a red circle")
    assert code == 0, output
    assert "principle: none" in output and "value per image: -, -, -, -" in output


def test_generate_unknown_value_names_the_known_ids(tiny_pipeline_dir, encoder_dir, tmp_path):
    code, output = _generate(tiny_pipeline_dir, encoder_dir, tmp_path / "grid.png", "a red circle", "--value", "nudety")
    assert code == 2
    assert "nudety" in output and "gender_equality" in output
    assert not (tmp_path / "grid.png").exists()
