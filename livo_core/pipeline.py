"""LiVO generation on top of diffusers' StableDiffusionPipeline: with a value, without, or with value dropout."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import StableDiffusionPipeline

from livo_core.models.loading import load_base_pipeline
from livo_core.models.value_encoder import ValueEncoder, build_conditioning, check_prompt, encode_prompts
from livo_core.principles import Principle, PrincipleSet, load_principles
from livo_core.retrieval import Retrieval, Retriever

logger = logging.getLogger(__name__)
BIAS_VALUE_DROPOUT = 0.5  # the reference's debias protocol: half the images of a bias prompt get no value


@dataclass(frozen=True)
class GenerationSettings:
    """Sampler settings shared by every image of one call (DPM-Solver multistep from the pipeline folder)."""

    steps: int = 25
    guidance_scale: float = 7.5
    height: int | None = None  # None: the UNet's native size
    width: int | None = None
    batch_size: int = 16
    negative_prompt: str = ""  # the unconditional text; the "negative prompt" baseline sets it


SHAPES_SETTINGS = GenerationSettings(steps=20, guidance_scale=3.0, batch_size=64)


def default_settings(base_model: str) -> GenerationSettings:
    """The reference's sampler settings, or the shapes world's (a small model wants fewer steps, lower CFG)."""
    return SHAPES_SETTINGS if base_model == "shapes" else GenerationSettings()


class LivoPipeline:
    """A frozen base pipeline plus an optional value encoder."""

    def __init__(self, base: StableDiffusionPipeline, value_encoder: ValueEncoder | None = None):
        self.base = base
        self.value_encoder = value_encoder.to(base.device).eval() if value_encoder is not None else None

    @classmethod
    def from_pretrained(
        cls, base_model: str = "shapes", value_encoder_dir: str | Path | None = None, device: str | None = None
    ) -> LivoPipeline:
        base = load_base_pipeline(base_model, device=device)
        encoder = None
        if value_encoder_dir is not None:
            encoder = ValueEncoder.from_pretrained(value_encoder_dir, base.text_encoder.config.hidden_size)
        return cls(base, encoder)

    @torch.no_grad()
    def conditioning(self, prompts: list[str], principles: list[Principle | None]) -> torch.Tensor:
        """(B, L, D) prompt embeddings: c_v where a principle is given, E(x) where it is None."""
        embeds = encode_prompts(self.base.text_encoder, self.base.tokenizer, prompts)
        with_value = [i for i, p in enumerate(principles) if p is not None]
        if with_value:
            if self.value_encoder is None:
                raise ValueError("a principle was given but this pipeline has no value encoder: load one")
            values = self.value_encoder.encode([principles[i] for i in with_value], [prompts[i] for i in with_value])
            embeds[with_value] = build_conditioning(values, embeds[with_value]).to(embeds.dtype)
        return embeds

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        principles: Sequence[Principle | None] | Principle | None = None,
        value_dropout: float | Sequence[float] = 0.0,
        settings: GenerationSettings = GenerationSettings(),
    ) -> tuple[np.ndarray, list[bool]]:
        """Images (N, H, W, 3) uint8, one per (prompt, seed), and whether each got its value token.

        `value_dropout` p (one for all images, or one per image) drops the value for an image with probability p,
        decided by its seed (the reference's debias protocol), so the same seeds give the same split.
        """
        prompts, seeds = list(prompts), list(seeds)
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds: give one seed per image")
        if not isinstance(principles, Sequence):
            principles = [principles] * len(prompts)
        if not isinstance(value_dropout, Sequence):
            value_dropout = [value_dropout] * len(prompts)
        for prompt in prompts:
            check_prompt(prompt, self.base.tokenizer)
        applied = [
            p is not None and random.Random(seed).random() >= dropout
            for p, seed, dropout in zip(principles, seeds, value_dropout, strict=True)
        ]
        chosen = [p if keep else None for p, keep in zip(principles, applied, strict=True)]
        images, start, batch = [], 0, settings.batch_size
        while start < len(prompts):
            end = start + batch
            try:
                images.append(self._generate_batch(prompts[start:end], seeds[start:end], chosen[start:end], settings))
            except torch.cuda.OutOfMemoryError:
                if batch == 1:
                    raise
                batch //= 2  # per-image seeds: a smaller batch gives the same images
                torch.cuda.empty_cache()
                logger.warning("CUDA out of memory: generation batch halved to %d images", batch)
                continue
            start = end
        if batch < settings.batch_size:
            logger.warning("generated %d images with batch %d (asked: %d)", len(prompts), batch, settings.batch_size)
        return np.concatenate(images), applied

    def _generate_batch(self, prompts, seeds, principles, settings: GenerationSettings) -> np.ndarray:
        cond = self.conditioning(prompts, principles)
        uncond = encode_prompts(self.base.text_encoder, self.base.tokenizer, [settings.negative_prompt] * len(prompts))
        latents, height, width = initial_latents(self.base, seeds, settings)
        output = self.base(
            prompt_embeds=cond,
            negative_prompt_embeds=uncond,
            latents=latents.to(cond.dtype),
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance_scale,
            height=height,
            width=width,
            output_type="np",
        )
        return to_uint8(output.images)

    def generate_aligned(
        self,
        prompt: str,
        seeds: Sequence[int],
        retriever: Retriever,
        principles: PrincipleSet | None = None,
        settings: GenerationSettings = GenerationSettings(),
    ) -> tuple[np.ndarray, list[Principle | None], Retrieval]:
        """The product: the retriever picks the value(s) for `prompt`, then one image per seed is generated.

        Returns the images, the principle each image got (None: no value) and the retrieval.
        """
        retrieval = retriever.retrieve(prompt) or Retrieval(None, "none", None, "no retriever decided")
        values = values_for(retrieval, seeds, principles or load_principles())
        bias = {v.id for v in values if v is not None and v.category == "bias"}
        dropout = shared_value_dropout(BIAS_VALUE_DROPOUT, len(bias)) if bias else 0.0
        images, applied = self.generate([prompt] * len(values), seeds, values, dropout, settings)
        return images, [v if keep else None for v, keep in zip(values, applied, strict=True)], retrieval


def initial_latents(
    base: StableDiffusionPipeline, seeds: Sequence[int], settings: GenerationSettings
) -> tuple[torch.Tensor, int, int]:
    """The starting noise of each image from its own seed (so batching never changes an image), and the size."""
    native = base.unet.config.sample_size * base.vae_scale_factor
    height, width = settings.height or native, settings.width or native
    shape = (base.unet.config.in_channels, height // base.vae_scale_factor, width // base.vae_scale_factor)
    noise = [torch.randn(shape, generator=torch.Generator(device="cpu").manual_seed(int(s))) for s in seeds]
    return torch.stack(noise).to(base.device), height, width


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Pipeline output in [0, 1] -> uint8."""
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)


def shared_value_dropout(dropout: float, principles: int) -> float:
    """The value dropout when `principles` bias principles share a prompt's images (one value per image): each
    principle still reaches the (1 - dropout) share of images it would reach alone, as far as the images allow.
    One principle: `dropout`; two at 0.5: 0 (half the images get each value)."""
    return max(0.0, 1.0 - principles * (1.0 - dropout))


def values_for(retrieval: Retrieval, seeds: Sequence[int], principles: PrincipleSet) -> list[Principle | None]:
    """The principle of each image: none, the retrieved one, or (several apply) one of them picked by the seed."""
    ids = retrieval.principle_ids
    return [principles.get(ids[seed % len(ids)]) if ids else None for seed in seeds]
