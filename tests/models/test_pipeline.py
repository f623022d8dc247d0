import json
import shutil

import numpy as np
import pytest
import torch

from livo_core.models.loading import ModelNotAvailableError, load_base_pipeline
from livo_core.models.miniature import write_sd15_miniature
from livo_core.models.value_encoder import ValueEncoder
from livo_core.pipeline import GenerationSettings, LivoPipeline, assign_values
from livo_core.retrieval import Retrieval, default_retriever

FAST = GenerationSettings(steps=2, guidance_scale=3.0, batch_size=3)


@pytest.fixture(scope="module")
def pipeline(tiny_pipeline_dir):
    base = load_base_pipeline(str(tiny_pipeline_dir), device="cpu")
    return LivoPipeline(base, ValueEncoder.from_text_encoder(base.text_encoder, base.tokenizer))


def test_two_step_generation_shapes_and_seeds(pipeline, principles):
    value = principles.get("gender_equality")
    images = pipeline.generate(["a photo of a doctor"] * 4, [1, 2, 3, 1], value, settings=FAST)
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8
    assert np.array_equal(images[0], images[3])  # same seed, same image, across batches
    assert not np.array_equal(images[0], images[1])


def test_value_changes_the_image_and_each_image_gets_its_own(pipeline, principles):
    value = principles.get("gender_equality")
    seeds = list(range(20))
    with_value = pipeline.generate(["a photo of a doctor"] * 20, seeds, value, settings=FAST)
    without = pipeline.generate(["a photo of a doctor"] * 20, seeds, None, settings=FAST)
    assert not np.array_equal(with_value, without)
    chosen = assign_values(["gender_equality"], principles, 20, {}, seed=3)
    assert sum(v is not None for v in chosen) == 10  # the reference's half, exactly
    mixed = pipeline.generate(["a photo of a doctor"] * 20, seeds, chosen, settings=FAST)
    for i, used in enumerate(chosen):
        assert np.array_equal(mixed[i], with_value[i] if used else without[i])


def test_principle_without_value_encoder_is_an_error(tiny_pipeline_dir, principles):
    plain = LivoPipeline(load_base_pipeline(str(tiny_pipeline_dir), device="cpu"))
    with pytest.raises(ValueError, match="no value encoder"):
        plain.generate(["a red circle"], [0], principles.get("bloody_inappropriate"), settings=FAST)


def test_seed_count_must_match(pipeline):
    with pytest.raises(ValueError, match="one seed per image"):
        pipeline.generate(["a", "b"], [0], settings=FAST)


def test_folder_missing_a_part_names_it(tmp_path, tiny_pipeline_dir):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_pipeline_dir, broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(ModelNotAvailableError, match="missing parts: unet"):
        load_base_pipeline(str(broken), device="cpu")


def test_folder_without_index(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="model_index.json"):
        load_base_pipeline(str(tmp_path), device="cpu")


def test_sd15_offline_error_says_how_to_get_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelNotAvailableError, match="local copy"):
        load_base_pipeline("sd15", device="cpu")


def test_pipeline_index_lists_standard_parts(tiny_pipeline_dir):
    index = json.loads((tiny_pipeline_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"


def test_values_spread_over_every_retrieved_principle(principles):
    retrieval = Retrieval("gender_equality", "person", None, "names a person", others=("racial_equality",))
    values = assign_values(retrieval.principle_ids, principles, 6, {}, seed=0)
    assert sorted(v.id for v in values) == ["gender_equality"] * 3 + ["racial_equality"] * 3
    calibrated = assign_values(retrieval.principle_ids, principles, 50, {"racial_equality": 0.8}, seed=0)
    assert sum(v is not None and v.id == "racial_equality" for v in calibrated) == 31  # 0.8 / 1.3 of 50, rounded
    assert assign_values(Retrieval(None, "embedding", 0.1, "far").principle_ids, principles, 2, {}, 0) == [None, None]


def test_generate_aligned_uses_the_retrieval_and_the_value_share(pipeline, principles):
    seeds = list(range(12))
    chain = default_retriever(principles)
    images, values, retrieval = pipeline.generate_aligned("a photo of a doctor", seeds, chain, principles, FAST)
    assert retrieval.principle_ids == ("gender_equality", "racial_equality")
    assert images.shape[0] == 12
    assert sorted(v.id for v in values) == ["gender_equality"] * 6 + ["racial_equality"] * 6  # two share the images
    _, race_only, _ = pipeline.generate_aligned("a photo of a woman doctor", seeds, chain, principles, FAST)
    applied = [v for v in race_only if v is not None]
    assert len(applied) == 6 and {v.id for v in applied} == {"racial_equality"}  # one value: exactly half
    pipeline.value_shares = {"racial_equality": 0.75}  # a calibrated share saved with the encoder
    try:
        _, calibrated, _ = pipeline.generate_aligned("a photo of a woman doctor", seeds, chain, principles, FAST)
    finally:
        pipeline.value_shares = {}
    assert sum(v is not None for v in calibrated) == 9
    _, toxic_values, _ = pipeline.generate_aligned("a gory red circle", seeds[:4], chain, principles, FAST)
    assert [v.id for v in toxic_values] == ["bloody_inappropriate"] * 4  # no dropout for toxicity


def test_cuda_out_of_memory_halves_the_batch_and_keeps_the_images(pipeline, principles, monkeypatch, caplog):
    seeds = list(range(6))
    expected = pipeline.generate(["a photo of a doctor"] * 6, seeds, settings=FAST)
    real = pipeline._generate_batch

    def small_batches_only(prompts, *args):
        if len(prompts) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(prompts, *args)

    monkeypatch.setattr(pipeline, "_generate_batch", small_batches_only)
    with caplog.at_level("WARNING"):
        images = pipeline.generate(["a photo of a doctor"] * 6, seeds, settings=FAST)
    assert np.array_equal(images, expected)
    assert "batch halved to 1" in caplog.text and "with batch 1 (asked: 3)" in caplog.text


def test_out_of_memory_at_batch_one_is_raised(pipeline, monkeypatch):
    def always(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(pipeline, "_generate_batch", always)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        pipeline.generate(["a photo of a doctor"] * 2, [0, 1], settings=FAST)


@pytest.fixture(scope="module")
def miniature(tmp_path_factory):
    return write_sd15_miniature(tmp_path_factory.mktemp("sd15") / "miniature")


def test_an_sd15_folder_samples_with_dpm_solver_unless_told_otherwise(miniature):
    assert json.loads((miniature / "scheduler" / "scheduler_config.json").read_text())["_class_name"] == "PNDMScheduler"
    base = load_base_pipeline(str(miniature), device="cpu")
    assert type(base.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert (
        base.scheduler.config.algorithm_type == "dpmsolver++" and base.scheduler.config.beta_schedule == "scaled_linear"
    )
    assert (
        type(load_base_pipeline(str(miniature), device="cpu", sampler="folder").scheduler).__name__ == "PNDMScheduler"
    )
    assert base.tokenizer.model_max_length == 77 and base.vae_scale_factor == 8


def test_a_prompt_longer_than_the_encoder_reads_is_cut_not_a_crash(pipeline, caplog):
    long = "a photo of " + " and ".join(["a doctor"] * 20)
    with caplog.at_level("WARNING"):
        images = pipeline.generate([long, "a photo of a doctor"], [0, 1], settings=FAST)
    assert images.shape[0] == 2 and "its end is cut off" in caplog.text
