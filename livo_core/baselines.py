"""Baselines that are not LiVO: Safe Latent Diffusion (diffusers' StableDiffusionPipelineSafe) on the same base."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionPipelineSafe

from livo_core.pipeline import GenerationSettings, initial_latents, to_uint8


class SafeLatentDiffusion:
    """SLD (Schramowski et al., CVPR 2023) with its default safety concept and "medium" strength settings; the
    same `generate` signature as `LivoPipeline` (principles are ignored: SLD has no values)."""

    def __init__(self, base: StableDiffusionPipeline):
        components = {k: v for k, v in base.components.items() if k not in ("safety_checker", "feature_extractor")}
        self.base = base
        self.sld = StableDiffusionPipelineSafe(
            **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
        self.sld.set_progress_bar_config(disable=True)

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        principles=None,
        settings: GenerationSettings = GenerationSettings(),
    ) -> np.ndarray:
        prompts, seeds, images = list(prompts), list(seeds), []
        for i in range(0, len(prompts), settings.batch_size):
            batch_seeds = seeds[i : i + settings.batch_size]
            latents, height, width = initial_latents(self.base, batch_seeds, settings)
            output = self.sld(
                prompts[i : i + settings.batch_size],
                height=height,
                width=width,
                num_inference_steps=settings.steps,
                guidance_scale=settings.guidance_scale,
                negative_prompt=[settings.negative_prompt] * len(batch_seeds),
                latents=latents.to(self.base.unet.dtype),
                output_type="np",
                sld_guidance_scale=1000,
                sld_warmup_steps=min(10, settings.steps // 2),
            )
            images.append(to_uint8(output.images))
        return np.concatenate(images)
