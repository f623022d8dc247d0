"""Cached VAE latents: encoded in chunks, halved on CUDA out of memory, equal to one VAE call."""

import logging

import numpy as np
import pytest
import torch

from livo_core.models.loading import load_base_pipeline
from livo_core.storage import LatentCache

N_IMAGES = 11  # not a multiple of the chunk sizes below: the last chunk is short
SHAS = [f"{i:02x}" + "0" * 62 for i in range(N_IMAGES)]


@pytest.fixture(scope="module")
def vae():
    return load_base_pipeline("shapes", device="cpu").vae


@pytest.fixture(scope="module")
def images(vae):
    size = vae.config.sample_size
    return np.random.default_rng(0).integers(0, 256, size=(N_IMAGES, size, size, 3), dtype=np.uint8)


VAE_ID = "shapes-vae"


def cached(root) -> torch.Tensor:
    return torch.stack([LatentCache(root, VAE_ID).load(sha) for sha in SHAS])


def encoded(vae, images, root, batch_size: int) -> torch.Tensor:
    LatentCache(root, VAE_ID).store(vae, images, SHAS, batch_size=batch_size)
    return cached(root)


@pytest.fixture(scope="module")
def one_call(vae, images, tmp_path_factory):
    """The latents of all images encoded in one VAE call."""
    return encoded(vae, images, tmp_path_factory.mktemp("one_call"), batch_size=N_IMAGES)


def assert_same_latents(latents: torch.Tensor, reference: torch.Tensor) -> None:
    """Equal up to float32 rounding. The CPU's convolution kernels depend on the batch size (oneDNN and native alike:
    about 4 ulp of the largest latent apart here), so other chunks are not bit-identical. A latent is a chain of about
    a dozen 3x3 convolutions over at most 64 channels (576 products each); reordered float32 sums differ by about
    sqrt(576) = 24 ulp at worst in probability, so 32 ulp of the largest latent bounds it with room. A latent stored
    under another image's hash is off by O(1)."""
    assert latents.shape == reference.shape and latents.dtype == torch.float32
    atol = 32 * torch.finfo(torch.float32).eps * reference.abs().max().item()
    torch.testing.assert_close(latents, reference, rtol=0, atol=atol)


@pytest.mark.parametrize("batch_size", [1, 4, 16])
def test_chunked_latents_equal_one_call(vae, images, one_call, tmp_path, batch_size, monkeypatch):
    calls = []
    encode = vae.encode
    monkeypatch.setattr(vae, "encode", lambda pixels: calls.append(len(pixels)) or encode(pixels))
    latents = encoded(vae, images, tmp_path, batch_size)
    assert calls == [min(batch_size, N_IMAGES - start) for start in range(0, N_IMAGES, batch_size)]
    assert_same_latents(latents, one_call)


def test_out_of_memory_halves_the_chunk_and_gives_the_same_latents(
    vae, images, one_call, tmp_path, monkeypatch, caplog
):
    halved = encoded(vae, images, tmp_path / "batch_2", batch_size=2)  # the chunks the halving ends with
    calls = []
    encode = vae.encode

    def small_gpu(pixels):  # room for at most 3 images per call
        calls.append(len(pixels))
        if len(pixels) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return encode(pixels)

    monkeypatch.setattr(vae, "encode", small_gpu)
    with caplog.at_level(logging.WARNING, logger="livo_core.storage"):
        latents = encoded(vae, images, tmp_path / "oom", batch_size=16)
    assert calls == [11, 8, 4, 2, 2, 2, 2, 2, 1]  # halved for the rest of the call, never grown back
    assert [r.getMessage() for r in caplog.records] == [
        f"CUDA out of memory: VAE encoding batch halved to {n} images" for n in (8, 4, 2)
    ]
    assert torch.equal(latents, halved)  # the same chunks: bit for bit
    assert_same_latents(latents, one_call)


def test_out_of_memory_with_one_image_is_raised(vae, images, tmp_path, monkeypatch):
    def no_gpu(pixels):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(vae, "encode", no_gpu)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        LatentCache(tmp_path, VAE_ID).store(vae, images[:2], SHAS[:2], batch_size=2)
    assert not (tmp_path / "latents").exists()


def test_one_hash_per_image(vae, images, tmp_path):
    with pytest.raises(ValueError, match="3 images but 2 hashes"):
        LatentCache(tmp_path, VAE_ID).store(vae, images[:3], SHAS[:2])


def test_latents_of_another_vae_are_never_read(vae, images, tmp_path):
    LatentCache(tmp_path, VAE_ID).store(vae, images[:1], SHAS[:1])
    with pytest.raises(FileNotFoundError, match="cached latent missing"):
        LatentCache(tmp_path, "another-vae").load(SHAS[0])
