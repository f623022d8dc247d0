"""An SD1.5-architecture miniature: a pipeline folder laid out and configured like the hub's SD1.5, tiny and random.

Every part has SD1.5's classes and the config keys the hub ships (PNDM scheduler, CLIP text encoder and its
77-token tokenizer, an 8x-downsampling 4-channel VAE with SD's scaling factor, a cross-attention UNet); only the
widths are tiny and the weights random, so the sd15 path of livo runs end to end on a CPU in seconds. Images are
64 px. It shows that the code path works, never what SD1.5 would draw.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from livo_core.models.tokenizer import build_clip_tokenizer

IMAGE_SIZE = 64
SD15_SCALING_FACTOR = 0.18215


def sd15_scheduler() -> PNDMScheduler:
    """The scheduler config SD1.5's hub folder ships (scheduler/scheduler_config.json)."""
    return PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
        trained_betas=None,
    )


def miniature_text_encoder(width: int = 32) -> CLIPTextModel:
    """SD1.5's CLIP ViT-L/14 text encoder (77 positions, quick_gelu, 49,408 tokens), `width` wide, 2 layers."""
    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=width,
        intermediate_size=4 * width,
        projection_dim=width,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    return CLIPTextModel(config)


def miniature_vae() -> AutoencoderKL:
    """SD1.5's VAE layout: four encoder blocks (8x downsampling), 4 latent channels, scaling factor 0.18215."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=IMAGE_SIZE,
        scaling_factor=SD15_SCALING_FACTOR,
    )


def miniature_unet(cross_attention_dim: int = 32) -> UNet2DConditionModel:
    """SD1.5's UNet classes (cross-attention down and up blocks, epsilon prediction on 4 latent channels), tiny."""
    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def write_sd15_miniature(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the miniature as a diffusers pipeline folder (fp32 safetensors, random weights from `seed`)."""
    torch.manual_seed(seed)
    pipeline = StableDiffusionPipeline(
        vae=miniature_vae(),
        text_encoder=miniature_text_encoder(),
        tokenizer=build_clip_tokenizer(77),
        unet=miniature_unet(),
        scheduler=sd15_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(out_dir, safe_serialization=True)
    return Path(out_dir)
