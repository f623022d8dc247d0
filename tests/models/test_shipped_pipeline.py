"""The shipped shapes pipeline folder works with plain diffusers defaults, as the README says."""

import numpy as np
import torch
from diffusers import DiffusionPipeline

from livo_core.models.loading import SHAPES_PIPELINE_DIR


def test_plain_diffusers_loads_and_calls_the_shipped_folder_on_cpu():
    pipeline = DiffusionPipeline.from_pretrained(SHAPES_PIPELINE_DIR)
    pipeline.set_progress_bar_config(disable=True)
    assert {pipeline.text_encoder.dtype, pipeline.unet.dtype, pipeline.vae.dtype} == {torch.float32}
    out = pipeline("a photo of a doctor", num_inference_steps=4, output_type="np", generator=torch.manual_seed(0))
    assert out.images.shape == (1, 32, 32, 3) and np.isfinite(out.images).all()
