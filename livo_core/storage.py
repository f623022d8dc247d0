"""Content-addressed files of a dataset folder: PNG images and their cached VAE latents."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from livo_core.atomic import atomic_path


def content_id(text: str) -> str:
    """A short stable id from content (prompt ids, request ids, pair ids)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def save_image(image: np.ndarray, root: Path) -> tuple[str, str]:
    """Write a PNG under `images/<sha[:2]>/<sha>.png` (atomic, skipped if present); returns (relative path, sha256)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    data = buffer.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    relative = Path("images") / sha[:2] / f"{sha}.png"
    target = root / relative
    if not target.exists():
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
    return str(relative), sha


def latent_path(root: Path, sha: str) -> Path:
    return root / "latents" / sha[:2] / f"{sha}.safetensors"


@torch.no_grad()
def cache_latents(vae: AutoencoderKL, images: np.ndarray, shas: Sequence[str], root: Path) -> None:
    """Encode images with the frozen VAE once (posterior mean x scaling factor) and store them by image hash."""
    pixels = torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).to(vae.device, vae.dtype) / 127.5 - 1.0
    latents = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor  # (N, 4, h, w)
    for latent, sha in zip(latents.float().cpu(), shas, strict=True):
        with atomic_path(latent_path(root, sha)) as tmp:
            save_file({"latent": latent.contiguous()}, str(tmp))


def load_latent(root: Path, sha: str) -> torch.Tensor:
    path = latent_path(root, sha)
    if not path.is_file():
        raise FileNotFoundError(f"cached latent missing: {path} (re-run the generation stage to re-encode it)")
    try:
        return load_file(str(path))["latent"]
    except SafetensorError as error:
        raise ValueError(f"cached latent {path} is unreadable ({error}): delete it and re-run") from error
