"""bench/gpu.py: SD1.5's published sizes, the choice of the best options, and a whole run at tiny size on CPU."""

import json
import math

import pytest
import torch

from bench.gpu import QUICK, TrainFigure, best_options, measure_training, report, run, sd15_size_modules


def test_sd15_size_components_have_sd15s_parameter_counts():
    vae, text_encoder, unet = sd15_size_modules(torch.device("meta"))  # shapes only, no memory
    counts = [sum(p.numel() for p in module.parameters()) for module in (vae, text_encoder, unet)]
    assert counts == [83_653_863, 123_060_480, 859_520_964]


def test_best_options_keep_what_was_faster_alone():
    figure = lambda name, speed, options, note="": TrainFigure(name, 8, speed, 1, 0, None, options, note)  # noqa: E731
    figures = [
        figure("release recipe", 5.0, {}),
        figure("livo default", 10.0, {}),
        figure("+ channels_last", 12.0, {"channels_last": True}),
        figure("+ one UNet call", 10.2, {"unet_calls": 1}),  # within the 3% of one short sample's noise
        figure("+ torch.compile", 20.0, {"compile_unet": True}, note="micro-batch fell to 4 (CUDA out of memory)"),
    ]
    assert best_options(figures) == {"channels_last": True}


def test_a_tiny_run_on_cpu_measures_every_configuration(tmp_path):
    page = run("tiny", QUICK, tmp_path, log=lambda line: None)
    result = json.loads(page.with_suffix(".json").read_text())
    names = [f["name"] for f in result["training"]]
    assert names[:4] == ["release recipe", "livo default", "+ channels_last", "+ one UNet call"]
    assert names.count("livo best") == len(QUICK.batches)
    assert all(math.isfinite(f["pairs_per_s"]) and f["pairs_per_s"] > 0 for f in result["training"])
    for f in result["training"]:  # pairs/s and step ms describe the same (mean) step
        assert f["pairs_per_s"] * f["step_ms"] == pytest.approx(1000 * f["batch"], rel=1e-6)
    release = result["training"][0]["options"]
    assert release["gradient_checkpointing"] and release["latent_source"] == "images"
    assert [f["name"] for f in result["generation"]][0] == "plain StableDiffusionPipeline"
    assert all(f["images_per_s"] > 0 for f in result["generation"])
    assert result["stages"]["png_write_s"] > 0 and result["stages"]["latent_write_s"] > 0
    text = page.read_text()
    assert "vs release recipe" in text and "Projected build of 86,000 pairs" in text
    assert "it tests the script" in text and "not assessed (not a GPU)" in text  # never read as a GPU figure


def test_a_failing_configuration_is_reported_not_fatal(tmp_path):
    missing = tmp_path / "no-such-dataset"
    figure = measure_training(str(tmp_path / "no-such-model"), missing, tmp_path, QUICK, "livo default", 8)
    assert figure.pairs_per_s == 0 and figure.note.startswith("failed: ")


def test_a_run_cut_short_still_reports_what_it_measured():
    header = {"device": "CPU (2 cores)", "size": "tiny", "torch": "x", "plan": QUICK.__dict__, "compile": "not run"}
    partial = {**header, "notes": ["the best-batch sweep stopped before batch 16: past its time budget"]}
    page = report({**partial, "training": [], "generation": []})
    assert "no verdict" in page and "stopped before batch 16" in page and "cut short" in page
