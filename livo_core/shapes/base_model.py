"""Builds and trains the shapes world's small latent diffusion model (a StableDiffusionPipeline folder)."""

from __future__ import annotations

import copy
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from tqdm.auto import tqdm
from transformers import CLIPTextConfig, CLIPTextModel

from livo_core.models.tokenizer import build_clip_tokenizer
from livo_core.shapes import world


@dataclass(frozen=True)
class ShapesModelConfig:
    """Architecture and training budget of the shapes base model (defaults reproduce the shipped one)."""

    max_tokens: int = 32  # tokenizer length, like SD's 77
    text_hidden: int = 96  # CLIP text width (SD: 768)
    text_layers: int = 2
    unet_channels: tuple[int, int, int] = (32, 64, 64)
    vae_channels: tuple[int, int] = (32, 64)  # 2 blocks: 32 px images -> 16x16 latents
    latent_channels: int = 4
    vae_steps: int = 800
    vae_batch: int = 64
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-4  # keeps latents near N(0, 1); 1e-6 gave noise-like latents that sampled badly
    unet_steps: int = 6000
    unet_batch: int = 64
    unet_lr: float = 1e-3
    prompt_dropout: float = 0.1  # share of empty prompts, for classifier-free guidance
    explicit_race: float = 0.15  # share of person prompts that name the race (0.45: the last fine-tune)
    ema_decay: float = 0.999
    seed: int = 0


def build_text_encoder(cfg: ShapesModelConfig) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=cfg.text_hidden,
        intermediate_size=4 * cfg.text_hidden,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=4,
        max_position_embeddings=cfg.max_tokens,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    return CLIPTextModel(config)


def build_vae(cfg: ShapesModelConfig) -> AutoencoderKL:
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * len(cfg.vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(cfg.vae_channels),
        block_out_channels=cfg.vae_channels,
        latent_channels=cfg.latent_channels,
        norm_num_groups=16,
        sample_size=world.SIZE,
        mid_block_add_attention=False,
    )


def build_unet(cfg: ShapesModelConfig) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=world.SIZE // 2 ** (len(cfg.vae_channels) - 1),
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        layers_per_block=1,
        block_out_channels=cfg.unet_channels,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cfg.text_hidden,
        attention_head_dim=8,
    )


# The cosine schedule reaches SNR ~2e-6 at t=999, where an epsilon model's x0 estimate amplifies its error ~600x and
# sampling from there draws noise textures (measured: adherence 0.00). Sampling starts at log-SNR/2 = -1.5 (t ~ 860),
# where the x0 estimate is reliable: adherence 0.86 with 20 DPM-Solver++ steps.
SAMPLING_LAMBDA_MIN = -1.5


def build_noise_scheduler() -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon", steps_offset=1
    )


def render_batch(rng: random.Random, n: int, explicit_race: float = 0.15) -> tuple[list[str], torch.Tensor]:
    """`n` fresh training prompts and their renders as a (n, 3, 32, 32) tensor in [-1, 1]."""
    prompts = [world.sample_training_prompt(rng, explicit_race) for _ in range(n)]
    images = np.stack([world.render(p.sample_scene(rng), rng) for p in prompts])
    return [p.text for p in prompts], to_model_range(images)


def to_model_range(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train_vae(vae: AutoencoderKL, cfg: ShapesModelConfig, rng: random.Random) -> float:
    """Fit the autoencoder to world renders; returns the latent std used as scaling factor."""
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr)
    for _ in tqdm(range(cfg.vae_steps), desc="vae", mininterval=5):
        _, images = render_batch(rng, cfg.vae_batch)
        posterior = vae.encode(images).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = F.mse_loss(recon, images) + cfg.vae_kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        _, images = render_batch(rng, 256)
        return float(vae.encode(images).latent_dist.mode().std())


class _Tokens:
    """Caches token ids per prompt text (the world has a few thousand distinct prompts)."""

    def __init__(self, max_tokens: int):
        self.tokenizer = build_clip_tokenizer(max_tokens)
        self._cache: dict[str, torch.Tensor] = {}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = [t for t in set(texts) if t not in self._cache]
        if missing:
            ids = self.tokenizer(missing, padding="max_length", truncation=True, return_tensors="pt").input_ids
            self._cache.update(zip(missing, ids, strict=True))
        return torch.stack([self._cache[t] for t in texts])


def train_denoiser(
    unet: UNet2DConditionModel,
    text_encoder: CLIPTextModel,
    vae: AutoencoderKL,
    cfg: ShapesModelConfig,
    rng: random.Random,
) -> tuple[UNet2DConditionModel, CLIPTextModel]:
    """Train UNet and text encoder jointly on fresh renders; returns their EMA copies."""
    tokens, noise_scheduler = _Tokens(cfg.max_tokens), build_noise_scheduler()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=0.0)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 200))
    ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)
    scaling = vae.config.scaling_factor
    progress = tqdm(range(cfg.unet_steps), desc="unet", mininterval=10)
    for step in progress:
        texts, images = render_batch(rng, cfg.unet_batch, cfg.explicit_race)
        texts = ["" if rng.random() < cfg.prompt_dropout else t for t in texts]
        with torch.no_grad():
            # The posterior mean: sampled latents carry the posterior's noise (std ~0.7 here), which the denoiser
            # cannot tell from diffusion noise at low t, and the samples come out noisy.
            latents = vae.encode(images).latent_dist.mode() * scaling  # (B, 4, 16, 16)
        noise = torch.randn_like(latents)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(texts),))
        noisy = noise_scheduler.add_noise(latents, noise, t)
        cond = text_encoder(tokens(texts))[0]  # (B, L, D)
        loss = F.mse_loss(unet(noisy, t, cond).sample, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        warmup.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        _ema_update(ema_unet, unet, decay)
        _ema_update(ema_text, text_encoder, decay)
        if step % 50 == 0:
            progress.set_postfix(loss=f"{loss.item():.4f}")
    return ema_unet, ema_text


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1.0 - decay)


def assemble_pipeline(
    cfg: ShapesModelConfig, vae: AutoencoderKL | None = None, unet=None, text_encoder=None
) -> StableDiffusionPipeline:
    """A StableDiffusionPipeline of the shapes architecture; missing parts are freshly initialised."""
    return StableDiffusionPipeline(
        vae=vae or build_vae(cfg),
        text_encoder=text_encoder or build_text_encoder(cfg),
        tokenizer=build_clip_tokenizer(cfg.max_tokens),
        unet=unet or build_unet(cfg),
        scheduler=DPMSolverMultistepScheduler.from_config(
            build_noise_scheduler().config, lambda_min_clipped=SAMPLING_LAMBDA_MIN
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def train_shapes_pipeline(
    out_dir: Path, cfg: ShapesModelConfig = ShapesModelConfig(), init_from: Path | None = None
) -> StableDiffusionPipeline:
    """Train the shapes model and save it as a pipeline folder (fp32 safetensors).

    From scratch: autoencoder, then UNet and text encoder. With `init_from` (a pipeline folder), the autoencoder is
    kept and UNet and text encoder continue training from its weights for `cfg.unet_steps`.
    """
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    started = time.time()
    if init_from is None:
        vae = build_vae(cfg)
        latent_std = train_vae(vae, cfg, rng)
        vae.register_to_config(scaling_factor=round(1.0 / latent_std, 5))
        unet, text_encoder = build_unet(cfg), build_text_encoder(cfg)
    else:
        start = StableDiffusionPipeline.from_pretrained(init_from, dtype=torch.float32)
        vae, unet, text_encoder = start.vae, start.unet, start.text_encoder
        latent_std = 1.0 / vae.config.scaling_factor
    vae.requires_grad_(False).eval()
    unet, text_encoder = train_denoiser(
        unet.train().requires_grad_(True), text_encoder.train().requires_grad_(True), vae, cfg, rng
    )
    pipeline = assemble_pipeline(cfg, vae, unet, text_encoder)
    # fp32 files: plain diffusers loads every part in the dtype it was saved in (fp16 text encoder, fp32 UNet fails)
    pipeline.to(torch.float32).save_pretrained(out_dir, safe_serialization=True)
    history = json.loads((Path(init_from) / "training.json").read_text()) if init_from else None
    record = {
        "config": asdict(cfg),
        "minutes": round((time.time() - started) / 60, 1),
        "latent_std": latent_std,
        "init_from": str(init_from) if init_from else None,
        "previous": history,
    }
    (Path(out_dir) / "training.json").write_text(json.dumps(record, indent=2))
    return pipeline.to(torch.float32)
