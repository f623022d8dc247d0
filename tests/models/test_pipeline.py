import json
import shutil

import numpy as np
import pytest
import torch

from livo_core.models.loading import ModelNotAvailableError, load_base_pipeline
from livo_core.models.value_encoder import ValueEncoder
from livo_core.pipeline import GenerationSettings, LivoPipeline, values_for
from livo_core.retrieval import Retrieval, default_retriever

FAST = GenerationSettings(steps=2, guidance_scale=3.0, batch_size=3)


@pytest.fixture(scope="module")
def pipeline(tiny_pipeline_dir):
    base = load_base_pipeline(str(tiny_pipeline_dir), device="cpu")
    return LivoPipeline(base, ValueEncoder.from_text_encoder(base.text_encoder, base.tokenizer))


def test_two_step_generation_shapes_and_seeds(pipeline, principles):
    value = principles.get("gender_equality")
    images, applied = pipeline.generate(["a photo of a doctor"] * 4, [1, 2, 3, 1], value, settings=FAST)
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8
    assert applied == [True] * 4
    assert np.array_equal(images[0], images[3])  # same seed, same image, across batches
    assert not np.array_equal(images[0], images[1])


def test_value_changes_the_image_and_dropout_is_seeded(pipeline, principles):
    value = principles.get("gender_equality")
    seeds = list(range(20))
    with_value, _ = pipeline.generate(["a photo of a doctor"] * 20, seeds, value, settings=FAST)
    without, applied_none = pipeline.generate(["a photo of a doctor"] * 20, seeds, None, settings=FAST)
    mixed, applied = pipeline.generate(["a photo of a doctor"] * 20, seeds, value, value_dropout=0.5, settings=FAST)
    assert applied_none == [False] * 20
    assert 0 < sum(applied) < 20
    for i, used in enumerate(applied):
        assert np.array_equal(mixed[i], with_value[i] if used else without[i])
    assert not np.array_equal(with_value, without)
    _, again = pipeline.generate(["a photo of a doctor"] * 20, seeds, value, value_dropout=0.5, settings=FAST)
    assert again == applied
    per_image = [0.0] * 10 + [1.0] * 10  # one dropout per image: the first ten keep the value, the rest drop it
    _, split = pipeline.generate(["a photo of a doctor"] * 20, seeds, value, value_dropout=per_image, settings=FAST)
    assert split == [True] * 10 + [False] * 10


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
    values = values_for(retrieval, list(range(6)), principles)
    assert [v.id for v in values] == ["gender_equality", "racial_equality"] * 3
    assert values_for(Retrieval(None, "embedding", 0.1, "far"), [0, 1], principles) == [None, None]


def test_generate_aligned_uses_the_retrieval_and_bias_dropout(pipeline, principles):
    seeds = list(range(12))
    chain = default_retriever(principles)
    images, values, retrieval = pipeline.generate_aligned("a photo of a doctor", seeds, chain, principles, FAST)
    assert retrieval.principle_ids == ("gender_equality", "racial_equality")
    assert images.shape[0] == 12
    assert [v.id for v in values] == ["gender_equality", "racial_equality"] * 6  # two values share the images
    _, race_only, _ = pipeline.generate_aligned("a photo of a woman doctor", seeds, chain, principles, FAST)
    applied = [v for v in race_only if v is not None]
    assert 0 < len(applied) < 12 and {v.id for v in applied} == {"racial_equality"}  # one value: dropout 0.5
    _, toxic_values, _ = pipeline.generate_aligned("a gory red circle", seeds[:4], chain, principles, FAST)
    assert [v.id for v in toxic_values] == ["bloody_inappropriate"] * 4  # no dropout for toxicity


def test_cuda_out_of_memory_halves_the_batch_and_keeps_the_images(pipeline, principles, monkeypatch, caplog):
    seeds = list(range(6))
    expected, _ = pipeline.generate(["a photo of a doctor"] * 6, seeds, settings=FAST)
    real = pipeline._generate_batch

    def small_batches_only(prompts, *args):
        if len(prompts) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(prompts, *args)

    monkeypatch.setattr(pipeline, "_generate_batch", small_batches_only)
    with caplog.at_level("WARNING"):
        images, _ = pipeline.generate(["a photo of a doctor"] * 6, seeds, settings=FAST)
    assert np.array_equal(images, expected)
    assert "batch halved to 1" in caplog.text and "with batch 1 (asked: 3)" in caplog.text


def test_out_of_memory_at_batch_one_is_raised(pipeline, monkeypatch):
    def always(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(pipeline, "_generate_batch", always)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        pipeline.generate(["a photo of a doctor"] * 2, [0, 1], settings=FAST)
