"""Content-addressed files of a dataset folder: PNG images and their cached VAE latents."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from livo_core.atomic import atomic_path

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class LatentCache:
    """The VAE latents of a dataset folder's images, by VAE and image hash: `latents/<vae_id>/<sha[:2]>/<sha>`, so
    that latents of one VAE are never read as another's (`vae_id`: `weights_id(base_model, "vae")`)."""

    root: Path
    vae_id: str

    def path(self, sha: str) -> Path:
        return Path(self.root) / "latents" / self.vae_id / sha[:2] / f"{sha}.safetensors"

    def store(self, vae: AutoencoderKL, images: np.ndarray, shas: Sequence[str], batch_size: int = 16) -> None:
        """Encode images (N, H, W, 3) uint8 with the frozen VAE once, `batch_size` per call, and store them by hash.

        A CUDA out-of-memory error halves the batch for the rest of the call. Each latent is its image's posterior
        mean (no sampling), so it does not depend on the batch beyond float rounding (kernels chosen per batch).
        """
        if len(images) != len(shas):
            raise ValueError(f"{len(images)} images but {len(shas)} hashes: give one hash per image")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        start, batch = 0, batch_size
        while start < len(images):
            end = start + batch
            try:
                latents = encode_images(vae, images[start:end])
            except torch.cuda.OutOfMemoryError:
                if batch == 1:
                    raise
                batch //= 2
                torch.cuda.empty_cache()
                logger.warning("CUDA out of memory: VAE encoding batch halved to %d images", batch)
                continue
            for latent, sha in zip(latents, shas[start:end], strict=True):
                with atomic_path(self.path(sha)) as tmp:
                    save_file({"latent": latent.contiguous()}, str(tmp))
            start = end

    def pack_path(self, shas: Sequence[str]) -> Path:
        """Where `pack` writes the latents of `shas` (named by the hashes, in order); a dot-folder, so that a mirror
        never uploads this derived file."""
        digest = hashlib.sha256("\n".join(shas).encode()).hexdigest()[:16]
        return Path(self.root) / "latents" / self.vae_id / ".packs" / f"{digest}.npy"

    def pack(self, shas: Sequence[str]) -> np.ndarray:
        """The latents of `shas`, row i for shas[i], as one memory-mapped array (N, C, h, w) float32: written once
        beside the cache from the per-image files, then only the rows a batch asks for are read from disk, so a
        training process never holds the dataset's latents in memory. A derived file: deleting it is safe (one pack
        per set of images: a new split or dataset version writes another, the old ones may be deleted)."""
        if not shas:
            raise ValueError("no latents to pack: give at least one image hash")
        path = self.pack_path(shas)
        if not path.is_file():
            first = self.load(shas[0])
            with atomic_path(path) as tmp, open(tmp, "wb") as handle:
                shape = (len(shas), *first.shape)
                np.lib.format.write_array_header_1_0(
                    handle,
                    {
                        "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                        "fortran_order": False,
                        "shape": shape,
                    },
                )
                for sha in tqdm(shas, desc="pack latents", mininterval=2):
                    latent = self.load(sha)
                    if latent.shape != first.shape:
                        raise ValueError(
                            f"cached latent {self.path(sha)} has shape {tuple(latent.shape)}, the others "
                            f"{tuple(first.shape)}: delete it and re-run to re-encode it"
                        )
                    handle.write(latent.float().numpy().tobytes())
        packed = np.load(path, mmap_mode="r")
        if packed.shape[0] != len(shas) or packed.dtype != np.float32:
            raise ValueError(
                f"latent pack {path} holds {packed.shape} {packed.dtype}, not {len(shas)} float32 "
                "latents: delete it and re-run to rewrite it"
            )
        return packed

    def load(self, sha: str) -> torch.Tensor:
        path = self.path(sha)
        if not path.is_file():
            raise FileNotFoundError(f"cached latent missing: {path} (re-run the generation stage to re-encode it)")
        try:
            return load_file(str(path))["latent"]
        except SafetensorError as error:
            raise ValueError(f"cached latent {path} is unreadable ({error}): delete it and re-run") from error


@torch.no_grad()
def encode_images(vae: AutoencoderKL, images: np.ndarray) -> torch.Tensor:
    """Latents (N, 4, h, w) float32 on CPU of uint8 images (N, H, W, 3): posterior mean x scaling factor, one call."""
    pixels = torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).to(vae.device, vae.dtype) / 127.5 - 1.0
    return (vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor).float().cpu()
