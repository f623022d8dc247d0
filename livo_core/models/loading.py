"""Loads a base diffusion pipeline from a profile name, a local folder or a hub id, offline-friendly."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
from huggingface_hub import snapshot_download
from transformers import CLIPTokenizer

from livo_core.principles import DATA_DIR

SHAPES_PIPELINE_DIR = DATA_DIR / "shapes_pipeline"
PROFILES = {"shapes": str(SHAPES_PIPELINE_DIR), "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5"}
_SD_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
Sampler = Literal["dpm-solver++", "folder"]  # the reference's DPM-Solver++ multistep, or the folder's own scheduler


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


def default_dtype(device: torch.device | None = None) -> torch.dtype:
    """fp16 on GPU, fp32 on CPU."""
    return torch.float16 if (device or default_device()).type == "cuda" else torch.float32


def local_folder(profile_or_path: str) -> Path:
    """The folder a base model loads from: a profile's or given folder, or a hub id's cached snapshot."""
    source = resolve_model(profile_or_path)
    if Path(source).is_dir():
        return Path(source)
    try:
        return Path(
            snapshot_download(source, local_files_only=True, allow_patterns=["*.json", "*.safetensors", "*.txt"])
        )
    except (OSError, ValueError) as error:
        raise ModelNotAvailableError(
            f"{source!r} is not on this machine ({type(error).__name__}): download it where the hub is reachable "
            f"(`huggingface-cli download {source} --local-dir <folder>`) and pass the folder instead"
        ) from error


@lru_cache(maxsize=16)
def _files_id(folder: str, stamps: tuple) -> str:
    digest = hashlib.sha256()
    for relative, _, _ in stamps:
        digest.update(relative.encode())
        with open(Path(folder) / relative, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def weights_id(profile_or_path: str, part: str | None = None) -> str:
    """A content hash of a base model's weight and config files (all parts, or one part such as "vae"): what makes
    two models the same, whatever their names. Hashed once per process and file state."""
    folder = local_folder(profile_or_path) / (part or "")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".json", ".txt"))
    if not files:
        raise ModelNotAvailableError(f"no weights in {folder}: expected safetensors and config files")
    stamps = tuple((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _files_id(str(folder.resolve()), stamps)


def use_reference_sampler(pipeline: StableDiffusionPipeline) -> StableDiffusionPipeline:
    """DPM-Solver++ multistep (the reference's sampler) from the folder's own schedule (betas, offset, prediction
    type); a folder that already ships it keeps its settings (the shapes model's clipped lambda)."""
    if not isinstance(pipeline.scheduler, DPMSolverMultistepScheduler):
        pipeline.scheduler = DPMSolverMultistepScheduler.from_config(
            pipeline.scheduler.config, algorithm_type="dpmsolver++"
        )
    return pipeline


def scheduler_provenance(pipeline: StableDiffusionPipeline) -> dict:
    """The sampler an image was made with: class and config."""
    config = {k: v for k, v in dict(pipeline.scheduler.config).items() if not k.startswith("_")}
    return {"class": type(pipeline.scheduler).__name__, "config": config}


def load_base_pipeline(
    profile_or_path: str = "shapes",
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    sampler: Sampler = "dpm-solver++",
) -> StableDiffusionPipeline:
    """Load a frozen StableDiffusionPipeline (`shapes`, `sd15`, a local folder or a hub id) with the reference's
    sampler, DPM-Solver++ multistep (`sampler="folder"`: the folder's own scheduler, e.g. SD1.5's PNDM).

    Hub ids resolve from the local Hugging Face cache first; with no network the error says how to get the
    weights. Defaults: fp16 on GPU, fp32 on CPU.
    """
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)
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
    if sampler == "dpm-solver++":
        use_reference_sampler(pipeline)
    return pipeline.to(device)


def load_tokenizer(profile_or_path: str) -> CLIPTokenizer:
    """A base model's tokenizer alone (no weights loaded): prompts are checked against what its encoder reads."""
    return CLIPTokenizer.from_pretrained(local_folder(profile_or_path), subfolder="tokenizer")
