"""LiVO generation on top of diffusers' StableDiffusionPipeline: each image with its value token or without."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import StableDiffusionPipeline

from livo_core.config import is_shapes_model
from livo_core.debias import REFERENCE_SHARE, value_assignment
from livo_core.models.loading import load_base_pipeline
from livo_core.models.tokenizer import too_long
from livo_core.models.value_encoder import (
    METADATA_FILE,
    SUBFOLDER,
    ValueEncoder,
    build_conditioning,
    check_prompt,
    encode_prompts,
)
from livo_core.principles import Principle, PrincipleSet, load_principles
from livo_core.retrieval import NOT_DECIDED, Retrieval, Retriever
from livo_core.storage import content_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationSettings:
    """Sampler settings shared by every image of one call (DPM-Solver multistep from the pipeline folder)."""

    steps: int = 25
    guidance_scale: float = 7.5
    height: int | None = None  # None: the UNet's native size
    width: int | None = None
    batch_size: int = 16
    negative_prompt: str = ""  # the unconditional text; the "negative prompt" baseline sets it


# The shapes world samples with 12 DPM-Solver++ steps (adherence as with 20, in 60% of the time) and the reference's
# CFG 7.5: at CFG 3 its race words barely steer it (a named asian figure drawn as asked 1 time in 4; 0.65 at 7.5).
SHAPES_SETTINGS = GenerationSettings(steps=12, guidance_scale=7.5, batch_size=64)


def default_settings(base_model: str) -> GenerationSettings:
    """The reference's sampler settings, or the shapes world's (a small model wants fewer steps)."""
    return SHAPES_SETTINGS if is_shapes_model(base_model) else GenerationSettings()


class LivoPipeline:
    """A frozen base pipeline plus an optional value encoder."""

    def __init__(
        self,
        base: StableDiffusionPipeline,
        value_encoder: ValueEncoder | None = None,
        value_shares: Mapping[str, float] | None = None,
    ):
        self.base = base
        self.value_encoder = value_encoder.to(base.device).eval() if value_encoder is not None else None
        self.value_shares = dict(value_shares or {})  # bias principle id -> share of images given the value

    @classmethod
    def from_pretrained(
        cls, base_model: str = "shapes", value_encoder_dir: str | Path | None = None, device: str | None = None
    ) -> LivoPipeline:
        base = load_base_pipeline(base_model, device=device)
        if value_encoder_dir is None:
            return cls(base)
        encoder = ValueEncoder.from_pretrained(value_encoder_dir, base.text_encoder.config.hidden_size)
        return cls(base, encoder, read_value_shares(value_encoder_dir))

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
        settings: GenerationSettings = GenerationSettings(),
    ) -> np.ndarray:
        """Images (N, H, W, 3) uint8, one per (prompt, seed); `principles`: each image's value (None: no value
        token), or one for all. `assign_values` decides which images of a prompt get a value."""
        prompts, seeds = list(prompts), list(seeds)
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds: give one seed per image")
        if not isinstance(principles, Sequence):
            principles = [principles] * len(prompts)
        for prompt in dict.fromkeys(prompts):
            check_prompt(prompt)
            if reason := too_long(prompt, self.base.tokenizer):  # read truncated, as SD does: never a crash
                logger.warning("%s; its end is cut off (%r...)", reason, prompt[:60])
        chosen = list(principles)
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
        return np.concatenate(images)

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
        """The product: the retriever picks the value(s) for `prompt`, then one image per seed is generated, a bias
        value on exactly its share of the images (the encoder's calibrated share, else the reference's half).

        Returns the images, the principle each image got (None: no value) and the retrieval.
        """
        seeds = list(seeds)
        retrieval = retriever.retrieve(prompt) or NOT_DECIDED
        values = assign_values(
            retrieval.principle_ids,
            principles or load_principles(),
            len(seeds),
            self.value_shares,
            assignment_seed(prompt, seeds),
        )
        return self.generate([prompt] * len(seeds), seeds, values, settings), values, retrieval


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


def assign_values(
    principle_ids: Sequence[str],
    principles: PrincipleSet,
    n: int,
    value_shares: Mapping[str, float],
    seed: int,
) -> list[Principle | None]:
    """Each of a prompt's n images' value, given the principles found for the prompt: toxicity principles cover every
    image (spread evenly: protection is never diluted), else each bias principle gets exactly its value share of the
    images (`value_shares`, the reference's 0.5 where missing), chosen by a permutation seeded by `seed`."""
    found = [principles.get(i) for i in principle_ids]
    toxic = [p for p in found if p.category == "toxicity"]
    if toxic:
        return value_assignment(n, [(p, 1 / len(toxic)) for p in toxic], seed)
    return value_assignment(n, [(p, value_shares.get(p.id, REFERENCE_SHARE)) for p in found], seed)


def assignment_seed(prompt: str, seeds: Sequence[int]) -> int:
    """The seed of a prompt's value assignment: fixed by the prompt and its image seeds."""
    return int(content_id(f"{prompt}|{list(seeds)}"), 16) % 2**32


def read_value_shares(value_encoder_dir: str | Path) -> dict[str, float]:
    """The value shares saved with a value encoder (calibrated by the dataset it was trained on); {} if none."""
    path = Path(value_encoder_dir) / SUBFOLDER / METADATA_FILE
    return json.loads(path.read_text()).get("value_shares", {}) if path.is_file() else {}
