"""Safe Latent Diffusion baseline on the tiny pipeline: same interface and seeding as LivoPipeline, a real effect."""

import numpy as np

from livo_core.baselines import SafeLatentDiffusion
from livo_core.models.loading import load_base_pipeline
from livo_core.pipeline import GenerationSettings, LivoPipeline

SETTINGS = GenerationSettings(steps=6, guidance_scale=7.5, batch_size=2)


def test_sld_generates_seeded_images_that_differ_from_the_base(tiny_pipeline_dir):
    base = load_base_pipeline(str(tiny_pipeline_dir), device="cpu")
    sld = SafeLatentDiffusion(base)
    prompts, seeds = ["a bloody red circle"] * 3, [4, 5, 4]
    images = sld.generate(prompts, seeds, settings=SETTINGS)
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
    assert np.array_equal(images[0], images[2])  # same seed, same image, across batches
    plain = LivoPipeline(base).generate(prompts, seeds, settings=SETTINGS)
    assert not np.array_equal(images, plain)  # the safety guidance changed the sampling
