"""LiVO as a diffusers pipeline: an export ships this file as pipeline.py, so DiffusionPipeline loads the export.

    pipeline = DiffusionPipeline.from_pretrained(folder, custom_pipeline=folder, trust_remote_code=True)
    images = pipeline("a photo of a doctor", value="auto", num_images_per_prompt=4, seeds=range(4)).images

The class only holds the components; generation is `LivoPipeline`'s (the same conditioning, seeds and value shares),
so that this pipeline and `livo generate` give the same images. It needs the livo package installed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import BaseOutput
from transformers import CLIPTextModel, CLIPTokenizer

from livo_core.models.value_encoder import METADATA_FILE, ValueEncoder
from livo_core.pipeline import GenerationSettings, LivoPipeline, default_settings
from livo_core.principles import Principle, load_principles
from livo_core.retrieval import Retriever, default_retriever

AUTO = "auto"  # value="auto": the retriever picks each prompt's principle(s)


@dataclass
class LivoPipelineOutput(BaseOutput):
    """The images in prompt order (num_images_per_prompt each), with the value and seed of each."""

    images: list[PIL.Image.Image] | np.ndarray  # PIL images, or (N, H, W, 3) uint8 with output_type="np"
    principle_ids: list[str | None]  # the principle each image was generated with (None: no value token)
    seeds: list[int]  # each image's seed: the same seed and settings give the same image


class LivoDiffusionPipeline(DiffusionPipeline):
    """A frozen Stable Diffusion pipeline plus the LiVO value encoder V, a CLIP text encoder that reads
    "{value}, {prompt}" with the base tokenizer (the one it was trained with) and returns the value token."""

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
        value_encoder: CLIPTextModel,
    ):
        super().__init__()
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            value_encoder=value_encoder,
        )
        # livo.json beside the encoder's weights (diffusers loads it from <folder>/value_encoder): base model, shares
        metadata = Path(value_encoder.name_or_path) / METADATA_FILE
        livo = json.loads(metadata.read_text()) if metadata.is_file() else {}
        self.base_model: str = livo.get("base_model", "")
        self.value_shares: dict[str, float] = livo.get("value_shares", {})
        self._retriever: Retriever | None = None

    @property
    def retriever(self) -> Retriever:
        """The retriever of value="auto": livo's default (keywords, learned probe, person words), built on first use."""
        if self._retriever is None:
            self._retriever = default_retriever()
        return self._retriever

    def livo_pipeline(self) -> LivoPipeline:
        """This pipeline's components (shared, not copied) as the LivoPipeline that generates."""
        base = StableDiffusionPipeline(
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            unet=self.unet,
            scheduler=self.scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        base.set_progress_bar_config(**getattr(self, "_progress_bar_config", {}))
        return LivoPipeline(base, ValueEncoder(self.value_encoder, self.tokenizer), self.value_shares)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        value: str | None = None,
        num_images_per_prompt: int = 1,
        seeds: Sequence[int] | None = None,
        generator: torch.Generator | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        height: int | None = None,
        width: int | None = None,
        negative_prompt: str = "",
        output_type: str = "pil",
    ) -> LivoPipelineOutput:
        """Generate num_images_per_prompt images per prompt, each from its own seed.

        value: None, no value token; a principle id (principles.yaml), that principle on every image; "auto", the
        retriever picks each prompt's principle(s): toxicity on every image, a bias principle on its share of the
        images (livo.json's calibrated share, else half), as `LivoPipeline.generate_aligned` does.
        seeds: one per image, in prompt order; None draws them from `generator` (a CPU torch.Generator; None: torch's
        global RNG). Each image's noise comes from its seed alone, so batching never changes an image.
        num_inference_steps, guidance_scale: None takes the base model's (`livo_core.pipeline.default_settings`).
        output_type: "pil" or "np" (uint8).
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        n = len(prompts) * num_images_per_prompt
        if n < 1:
            raise ValueError(f"no images asked: {len(prompts)} prompts x num_images_per_prompt={num_images_per_prompt}")
        if output_type not in ("pil", "np"):
            raise ValueError(f"output_type={output_type!r}: give 'pil' or 'np'")
        if seeds is None:
            seeds = torch.randint(0, 2**32, (n,), generator=generator).tolist()
        seeds = [int(s) for s in seeds]
        if len(seeds) != n:
            raise ValueError(
                f"{len(seeds)} seeds for {n} images ({len(prompts)} prompts x {num_images_per_prompt}): one each"
            )
        defaults = default_settings(self.base_model)
        settings = replace(
            defaults,
            steps=num_inference_steps or defaults.steps,
            guidance_scale=defaults.guidance_scale if guidance_scale is None else guidance_scale,
            height=height,
            width=width,
            negative_prompt=negative_prompt,
        )
        images, values = self._generate(prompts, num_images_per_prompt, seeds, value, settings)
        return LivoPipelineOutput(
            images=[PIL.Image.fromarray(image) for image in images] if output_type == "pil" else images,
            principle_ids=[v.id if v is not None else None for v in values],
            seeds=seeds,
        )

    def _generate(
        self, prompts: list[str], k: int, seeds: list[int], value: str | None, settings: GenerationSettings
    ) -> tuple[np.ndarray, list[Principle | None]]:
        livo, principles = self.livo_pipeline(), load_principles()
        if value == AUTO:  # one retrieval and value assignment per prompt, over that prompt's seeds
            parts = [
                livo.generate_aligned(p, seeds[i * k : (i + 1) * k], self.retriever, principles, settings)
                for i, p in enumerate(prompts)
            ]
            return np.concatenate([images for images, _, _ in parts]), [v for _, chosen, _ in parts for v in chosen]
        try:
            principle = None if value is None else principles.get(value)
        except KeyError as error:
            raise ValueError(f"value={value!r}: {error.args[0]}; or value=None (no value token) or {AUTO!r}") from None
        images = livo.generate([p for p in prompts for _ in range(k)], seeds, principle, settings)
        return images, [principle] * len(seeds)
