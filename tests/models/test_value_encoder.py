import pytest
import torch
from transformers import CLIPTextModel

from livo_core.models.loading import load_base_pipeline
from livo_core.models.tokenizer import too_long
from livo_core.models.value_encoder import ValueEncoder, build_conditioning, check_prompt, encode_prompts
from livo_core.shapes.base_model import ShapesModelConfig, build_text_encoder
from livo_core.training import _TRAJECTORY_FIELDS  # noqa: F401  (import check: the trainer imports cleanly)


@pytest.fixture(scope="module")
def base(tiny_pipeline_dir):
    return load_base_pipeline(str(tiny_pipeline_dir), device="cpu")


def test_value_encoder_starts_equal_to_frozen_encoder(base, principles):
    encoder = ValueEncoder.from_text_encoder(base.text_encoder, base.tokenizer)
    ids = base.tokenizer(["gender equality, a photo of a doctor"], padding="max_length", return_tensors="pt").input_ids
    assert torch.equal(encoder(ids), base.text_encoder(ids).pooler_output)
    assert all(p.requires_grad for p in encoder.parameters())
    assert not any(p.requires_grad for p in base.text_encoder.parameters())


def test_conditioning_has_the_unconditional_length(base, principles):
    encoder = ValueEncoder.from_text_encoder(base.text_encoder, base.tokenizer)
    prompts = ["a photo of a doctor", "a red circle"]
    prompt_embeds = encode_prompts(base.text_encoder, base.tokenizer, prompts)
    value = encoder.encode([principles.get("gender_equality")] * 2, prompts)
    cond = build_conditioning(value, prompt_embeds)
    uncond = encode_prompts(base.text_encoder, base.tokenizer, [""])
    assert cond.shape == prompt_embeds.shape == (2, base.tokenizer.model_max_length, 32)
    assert cond.shape[1:] == uncond.shape[1:]
    assert torch.equal(cond[:, 0], value) and torch.equal(cond[:, 1:], prompt_embeds[:, :-1])


def test_conditioning_rejects_mismatched_widths():
    with pytest.raises(ValueError, match="do not fit"):
        build_conditioning(torch.zeros(2, 8), torch.zeros(2, 5, 16))


def test_save_load_round_trip_is_plain_clip(tmp_path, base, principles):
    encoder = ValueEncoder.from_text_encoder(base.text_encoder, base.tokenizer)
    with torch.no_grad():
        encoder.text_model.final_layer_norm.bias.add_(0.5)  # differ from the base
    encoder.save_pretrained(tmp_path, metadata={"base_model": "tiny"})
    plain = CLIPTextModel.from_pretrained(tmp_path, subfolder="value_encoder")
    assert torch.equal(plain.final_layer_norm.bias, encoder.text_model.final_layer_norm.bias)
    assert (tmp_path / "value_encoder" / "model.safetensors").is_file()
    loaded = ValueEncoder.from_pretrained(tmp_path, expected_hidden_size=32)
    args = ([principles.get("racial_equality")], ["a photo of a nurse"])
    assert torch.allclose(loaded.encode(*args), encoder.encode(*args))
    assert encoder.metadata(tmp_path) == {"base_model": "tiny"}


def test_checkpoint_of_another_architecture_is_refused(tmp_path, base):
    other = ValueEncoder(build_text_encoder(ShapesModelConfig(text_hidden=64)), base.tokenizer)
    other.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="width 64.*another base model"):
        ValueEncoder.from_pretrained(tmp_path, expected_hidden_size=32)


def test_missing_value_encoder_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no value encoder"):
        ValueEncoder.from_pretrained(tmp_path)


@pytest.mark.parametrize("prompt", ["", "   "])
def test_empty_prompts_are_named(prompt):
    with pytest.raises(ValueError, match="empty prompt"):
        check_prompt(prompt)


def test_a_long_prompt_is_named_with_its_token_count(base):
    assert too_long("a photo of a doctor", base.tokenizer) is None
    reason = too_long("word " * 200, base.tokenizer)
    assert reason.startswith("prompt is 200 tokens") and f"at most {base.tokenizer.model_max_length - 2}" in reason


def test_unknown_hub_id_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="hub id"):
        ValueEncoder.from_pretrained("someone/not-a-value-encoder")
