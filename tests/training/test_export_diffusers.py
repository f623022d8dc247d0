"""An export is a diffusers pipeline: its custom pipeline and the prompt_embeds recipe give LivoPipeline's images."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline
from transformers import CLIPTextModel

from livo_core import diffusers_pipeline
from livo_core.checkpoint import save_checkpoint
from livo_core.export import export_value_encoder
from livo_core.models.loading import load_base_pipeline
from livo_core.models.tokenizer import build_clip_tokenizer
from livo_core.models.value_encoder import ValueEncoder
from livo_core.pipeline import GenerationSettings, LivoPipeline, to_uint8
from livo_core.retrieval import default_retriever

FAST = GenerationSettings(steps=2, guidance_scale=3.0)
CALL = {"num_inference_steps": FAST.steps, "guidance_scale": FAST.guidance_scale, "output_type": "np"}
SHARES = {"gender_equality": 0.25}  # a calibrated share, so that value="auto" must read livo.json
TRAIN_CONFIG = {"loss": "livo", "batch_size": 2, "grad_accumulation": 1, "learning_rate": 1e-6}


def write_checkpoint(base, output_dir: Path, tokenizer=None) -> Path:
    """A checkpoint of a value encoder moved away from the frozen text encoder (so that the value token matters)."""
    encoder = ValueEncoder.from_text_encoder(base.text_encoder, tokenizer or base.tokenizer)
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    optimizer = torch.optim.AdamW(encoder.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return save_checkpoint(output_dir, 3, encoder, optimizer, scheduler, TRAIN_CONFIG, value_shares=SHARES)


@pytest.fixture(scope="module")
def export_dir(tiny_pipeline_dir, tmp_path_factory):
    base = load_base_pipeline(str(tiny_pipeline_dir), device="cpu")
    root = tmp_path_factory.mktemp("export")
    checkpoint = write_checkpoint(base, root / "run")
    return export_value_encoder(checkpoint, root / "export", str(tiny_pipeline_dir), "tiny-dataset", "| table |\n")


@pytest.fixture(scope="module")
def livo(tiny_pipeline_dir, export_dir):
    return LivoPipeline.from_pretrained(str(tiny_pipeline_dir), export_dir, device="cpu")


@pytest.fixture(scope="module")
def pipe(export_dir):
    return DiffusionPipeline.from_pretrained(str(export_dir), custom_pipeline=str(export_dir), trust_remote_code=True)


def test_the_export_is_a_diffusers_pipeline_folder(export_dir, tiny_pipeline_dir, pipe):
    index = json.loads((export_dir / "model_index.json").read_text())
    for part in ("vae", "text_encoder", "tokenizer", "unet", "scheduler", "value_encoder"):
        assert index[part][0] in ("diffusers", "transformers") and (export_dir / part).is_dir()
    assert "_name_or_path" not in index  # no path of the exporting machine
    assert (export_dir / "pipeline.py").read_text() == Path(diffusers_pipeline.__file__).read_text()
    livo_json = json.loads((export_dir / "value_encoder" / "livo.json").read_text())
    assert livo_json["base_model"] == str(tiny_pipeline_dir) and livo_json["value_shares"] == SHARES
    assert type(pipe).__name__ == "LivoDiffusionPipeline" and pipe.value_shares == SHARES
    assert CLIPTextModel.from_pretrained(export_dir, subfolder="value_encoder").config.hidden_size == 32
    card = (export_dir / "README.md").read_text()
    assert "custom_pipeline=folder, trust_remote_code=True" in card and "prompt_embeds=c_v" in card


@pytest.mark.parametrize("value", [None, "gender_equality", "bloody_inappropriate"])
def test_diffusers_pipeline_equals_livo_pipeline(pipe, livo, principles, value):
    seeds = [5, 6, 7]
    output = pipe("a photo of a doctor", value=value, num_images_per_prompt=3, seeds=seeds, **CALL)
    principle = principles.get(value) if value else None
    expected = livo.generate(["a photo of a doctor"] * 3, seeds, principle, FAST)
    assert np.array_equal(output.images, expected)
    assert output.principle_ids == [value] * 3 and output.seeds == seeds
    if value is not None:
        assert not np.array_equal(output.images, livo.generate(["a photo of a doctor"] * 3, seeds, None, FAST))


def test_auto_retrieves_per_prompt_and_applies_the_value_shares(pipe, livo, principles):
    prompts, seeds = ["a photo of a doctor", "a bloody knife"], list(range(8))
    output = pipe(prompts, value="auto", num_images_per_prompt=4, seeds=seeds, **CALL)
    retriever = default_retriever(principles)
    for i, prompt in enumerate(prompts):
        images, values, _ = livo.generate_aligned(prompt, seeds[4 * i : 4 * i + 4], retriever, principles, FAST)
        assert np.array_equal(output.images[4 * i : 4 * i + 4], images)
        assert output.principle_ids[4 * i : 4 * i + 4] == [v.id if v else None for v in values]
    doctor = output.principle_ids[:4]
    assert doctor.count("gender_equality") == 1 and doctor.count("racial_equality") == 2  # shares 0.25 and 0.5
    assert set(output.principle_ids[4:]) == {"bloody_inappropriate"}  # toxicity: on every image


def test_prompt_embeds_recipe_with_a_plain_stable_diffusion_pipeline(export_dir, livo, principles):
    """The card's recipe, with diffusers and transformers alone, gives LivoPipeline's images for that principle."""
    sd = StableDiffusionPipeline.from_pretrained(export_dir)
    value_encoder = CLIPTextModel.from_pretrained(export_dir, subfolder="value_encoder")

    def tokens(text):
        return sd.tokenizer(text, padding="max_length", truncation=True, return_tensors="pt").input_ids

    prompt, value, seeds = "a photo of a doctor", principles.get("gender_equality").text, [5, 6, 7]
    with torch.no_grad():
        value_token = value_encoder(tokens(f"{value}, {prompt}")).pooler_output  # (1, D)
        prompt_embeds = sd.text_encoder(tokens(prompt)).last_hidden_state  # (1, L, D)
        c_v = torch.cat([value_token[:, None], prompt_embeds[:, :-1]], dim=1)  # (1, L, D)
        uncond = sd.text_encoder(tokens("")).last_hidden_state
    images = sd(
        prompt_embeds=c_v,
        negative_prompt_embeds=uncond,
        num_images_per_prompt=len(seeds),
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        **CALL,
    ).images
    expected = livo.generate([prompt] * 3, seeds, principles.get("gender_equality"), FAST)
    assert np.array_equal(to_uint8(images), expected)


def test_seeds_from_a_generator_are_returned_and_reproduce_the_images(pipe):
    output = pipe(
        "a red circle",
        num_images_per_prompt=2,
        generator=torch.Generator().manual_seed(0),
        **CALL | {"output_type": "pil"},
    )
    again = pipe("a red circle", num_images_per_prompt=2, seeds=output.seeds, **CALL)
    assert np.array_equal(np.stack([np.asarray(image) for image in output.images]), again.images)


def test_an_unknown_principle_id_is_named_with_the_valid_ones(pipe, principles):
    with pytest.raises(ValueError, match="unknown principle id 'gender_equalty'") as error:
        pipe("a photo of a doctor", value="gender_equalty", seeds=[0], **CALL)
    assert all(principle_id in str(error.value) for principle_id in principles.ids) and "'auto'" in str(error.value)


def test_a_value_encoder_with_another_tokenizer_is_not_exported(tiny_pipeline_dir, tmp_path):
    base = load_base_pipeline(str(tiny_pipeline_dir), device="cpu")
    checkpoint = write_checkpoint(base, tmp_path / "run", tokenizer=build_clip_tokenizer(model_max_length=77))
    with pytest.raises(ValueError, match="tokenizer differs from the base model's"):
        export_value_encoder(checkpoint, tmp_path / "export", str(tiny_pipeline_dir), "tiny-dataset", "")
    assert not any(tmp_path.glob("*export*"))  # nothing half-written left behind
