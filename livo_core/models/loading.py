"""Loads a base diffusion pipeline from a profile name, a local folder or a hub id, offline-friendly."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from livo_core.principles import DATA_DIR

SHAPES_PIPELINE_DIR = DATA_DIR / "shapes_pipeline"
PROFILES = {"shapes": str(SHAPES_PIPELINE_DIR), "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5"}
_SD_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


class ModelNotAvailableError(RuntimeError):
    """The weights asked for are not on this machine and cannot be fetched."""


def resolve_model(profile_or_path: str) -> str:
    """A profile name becomes its folder or hub id; anything else is returned unchanged."""
    return PROFILES.get(profile_or_path, profile_or_path)


def check_pipeline_folder(folder: Path) -> None:
    """A clear error when a local pipeline folder lacks its index or one of its parts."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelNotAvailableError(f"{folder} is not a diffusers pipeline folder: model_index.json is missing")
    listed = [name for name, spec in json.loads(index.read_text()).items() if isinstance(spec, list) and spec[0]]
    missing = [name for name in listed if name in _SD_PARTS and not (folder / name).is_dir()]
    if missing:
        raise ModelNotAvailableError(
            f"pipeline folder {folder} is missing parts: {', '.join(missing)} "
            "(copy the complete folder, e.g. with `huggingface-cli download <repo> --local-dir <folder>`)"
        )


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_base_pipeline(
    profile_or_path: str = "shapes", dtype: torch.dtype | None = None, device: str | torch.device | None = None
) -> StableDiffusionPipeline:
    """Load a frozen StableDiffusionPipeline (`shapes`, `sd15`, a local folder or a hub id).

    Hub ids resolve from the local Hugging Face cache first; with no network the error says how to get the
    weights. Defaults: fp16 on GPU, fp32 on CPU.
    """
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    source = resolve_model(profile_or_path)
    if Path(source).exists():
        check_pipeline_folder(Path(source))
    try:
        pipeline = StableDiffusionPipeline.from_pretrained(
            source, dtype=dtype, safety_checker=None, requires_safety_checker=False, use_safetensors=True
        )
    except (OSError, ValueError) as error:
        raise ModelNotAvailableError(
            f"cannot load the diffusion pipeline {source!r} ({type(error).__name__}: {str(error)[:200]}). "
            "Offline machines need a local copy: download it where the hub is reachable "
            f"(`huggingface-cli download {source} --local-dir <folder>`) and pass the folder instead."
        ) from error
    pipeline.set_progress_bar_config(disable=True)
    for part in (pipeline.unet, pipeline.vae, pipeline.text_encoder):
        part.requires_grad_(False).eval()
    return pipeline.to(device)
