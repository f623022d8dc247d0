"""The value encoder (a trainable copy of the CLIP text encoder) and the one place conditioning is built."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from transformers import CLIPTextModel, CLIPTokenizer

from livo_core.models.loading import local_folder
from livo_core.principles import Principle, value_prompt

SUBFOLDER = "value_encoder"
METADATA_FILE = "livo.json"


def tokenize(tokenizer: CLIPTokenizer, texts: list[str]) -> torch.Tensor:
    """Token ids (B, L) padded and truncated to the tokenizer's length, the way SD does it."""
    return tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt").input_ids


def check_prompt(prompt: str) -> str:
    """Reject an empty prompt, naming it and the fix."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"empty prompt {prompt!r}: give a non-empty text prompt")
    return prompt


@torch.no_grad()
def encode_prompts(text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, prompts: list[str]) -> torch.Tensor:
    """The frozen prompt embedding E(x): last hidden state, (B, L, D)."""
    ids = tokenize(tokenizer, prompts).to(text_encoder.device)
    return text_encoder(ids)[0]


def build_conditioning(value_embeds: torch.Tensor, prompt_embeds: torch.Tensor) -> torch.Tensor:
    """c_v = [V(v, x); E(x)[:, :L-1]]: the value token prepended, the last (padding) position dropped.

    value_embeds (B, D), prompt_embeds (B, L, D) -> (B, L, D). Dropping the last position keeps c_v as long as
    the unconditional embedding, in training and inference alike (the release used 78 tokens in training and
    77 at inference).
    """
    if value_embeds.shape[0] != prompt_embeds.shape[0] or value_embeds.shape[-1] != prompt_embeds.shape[-1]:
        raise ValueError(
            f"value embeds {tuple(value_embeds.shape)} do not fit prompt embeds {tuple(prompt_embeds.shape)}"
        )
    value_token = value_embeds[:, None, :].to(prompt_embeds.dtype)  # (B, 1, D)
    return torch.cat([value_token, prompt_embeds[:, :-1]], dim=1)


class ValueEncoder(torch.nn.Module):
    """V(v, x): a CLIP text encoder reading "{value}, {prompt}"; returns its pooled (EOS) state, (B, D)."""

    def __init__(self, text_model: CLIPTextModel, tokenizer: CLIPTokenizer):
        super().__init__()
        self.text_model = text_model
        self.tokenizer = tokenizer

    @classmethod
    def from_text_encoder(cls, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer) -> ValueEncoder:
        """A trainable copy of the frozen text encoder, so at step 0 V equals E."""
        text_model = copy.deepcopy(text_encoder).float().train().requires_grad_(True)
        return cls(text_model, tokenizer)

    @classmethod
    def from_base_model(cls, base_model: str, tokenizer: CLIPTokenizer) -> ValueEncoder:
        """A trainable copy of a base model's text encoder, read in fp32 from its folder (never a round trip through
        the frozen copy's bf16 or fp16), so at step 0 V equals E."""
        folder = local_folder(base_model)
        text_model = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", dtype=torch.float32)
        return cls(text_model.train().requires_grad_(True), tokenizer)

    @property
    def device(self) -> torch.device:
        return self.text_model.device

    @property
    def hidden_size(self) -> int:
        return self.text_model.config.hidden_size

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_model(input_ids.to(self.device)).pooler_output  # (B, D)

    def token_ids(self, principles: list[Principle], prompts: list[str]) -> torch.Tensor:
        """Token ids of "{value}, {prompt}" for each pair, (B, L)."""
        return tokenize(self.tokenizer, [value_prompt(p, x) for p, x in zip(principles, prompts, strict=True)])

    def encode(self, principles: list[Principle], prompts: list[str]) -> torch.Tensor:
        """The value token for each (principle, prompt) pair, (B, D)."""
        return self(self.token_ids(principles, prompts))

    def save_pretrained(self, directory: str | Path, metadata: dict | None = None) -> Path:
        """Write `directory/value_encoder/` (CLIPTextModel, safetensors, tokenizer, livo.json)."""
        folder = Path(directory) / SUBFOLDER
        self.text_model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        (folder / METADATA_FILE).write_text(json.dumps(metadata or {}, indent=2, default=str))
        return folder

    @classmethod
    def from_pretrained(cls, source: str | Path, expected_hidden_size: int | None = None) -> ValueEncoder:
        """Load what `save_pretrained` wrote, from a local folder or a hub id; checks the width against the base."""
        if Path(source).exists() and not (Path(source) / SUBFOLDER / "config.json").is_file():
            raise FileNotFoundError(
                f"no value encoder in {source}: expected {Path(source) / SUBFOLDER}/config.json and model.safetensors "
                "(a folder written by ValueEncoder.save_pretrained or `livo train`)"
            )
        try:
            text_model = CLIPTextModel.from_pretrained(source, subfolder=SUBFOLDER, dtype=torch.float32)
            tokenizer = CLIPTokenizer.from_pretrained(source, subfolder=SUBFOLDER)
        except OSError as error:
            raise FileNotFoundError(
                f"cannot load a value encoder from {str(source)!r} ({str(error)[:160]}): give a local folder or a hub "
                "id with a value_encoder/ subfolder; offline, download it first and pass the folder"
            ) from error
        if expected_hidden_size is not None and text_model.config.hidden_size != expected_hidden_size:
            raise ValueError(
                f"value encoder in {source} has width {text_model.config.hidden_size}, the base model's text encoder "
                f"{expected_hidden_size}: it was trained for another base model; train one for this base"
            )
        return cls(text_model, tokenizer)

    def metadata(self, directory: str | Path) -> dict:
        return json.loads((Path(directory) / SUBFOLDER / METADATA_FILE).read_text())
