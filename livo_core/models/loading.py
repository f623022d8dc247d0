"""Loads a base diffusion pipeline from a profile name, a local folder or a hub id, offline-friendly."""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
from diffusers.utils import logging as diffusers_logging
from huggingface_hub import snapshot_download
from huggingface_hub.utils import are_progress_bars_disabled
from transformers import CLIPTokenizer

from livo_core.principles import DATA_DIR

if are_progress_bars_disabled():  # HF_HUB_DISABLE_PROGRESS_BARS (livo's CLI sets it): diffusers' bars too, as
    diffusers_logging.disable_progress_bar()  # transformers' already follow it

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


_PIPELINE_FILES = [  # what StableDiffusionPipeline loads: no weight variants (fp16, non_ema), no checkpoints
    "model_index.json",
    *(f"{part}/*.json" for part in _SD_PARTS),
    "tokenizer/*.txt",
    *(f"{part}/*model.safetensors" for part in ("unet", "vae", "text_encoder")),
    *(f"{part}/*model-*-of-*.safetensors" for part in ("unet", "vae", "text_encoder")),
]
_WEIGHT_IDS = Path.home() / ".cache" / "livo" / "weights_ids.json"


def local_folder(profile_or_path: str) -> Path:
    """The folder a base model loads from: a profile's or given folder, or a hub id's snapshot (the local Hugging
    Face cache first, then the hub where it is reachable; only the files the pipeline loads)."""
    source = resolve_model(profile_or_path)
    if Path(source).is_dir():
        return Path(source)
    try:
        return Path(snapshot_download(source, local_files_only=True, allow_patterns=_PIPELINE_FILES))
    except (OSError, ValueError):
        pass
    try:
        return Path(snapshot_download(source, allow_patterns=_PIPELINE_FILES))
    except (OSError, ValueError) as error:
        raise ModelNotAvailableError(
            f"{source!r} is neither a folder nor in the local Hugging Face cache, and the hub could not be reached "
            f"({type(error).__name__}): download it where the hub is reachable "
            f"(`huggingface-cli download {source} --local-dir <folder>`) and pass that local copy instead"
        ) from error


def pipeline_files(folder: Path, part: str | None = None) -> list[Path]:
    """The files of a pipeline folder (or of one part) that loading reads: a copy with extra variants or a
    single-file checkpoint beside the parts has the same files."""
    patterns = [p for p in _PIPELINE_FILES if part is None or p.startswith(f"{part}/")]
    return sorted({f for pattern in patterns for f in folder.glob(pattern) if f.is_file() and _no_variant(f)})


def _no_variant(file: Path) -> bool:
    return file.suffix != ".safetensors" or file.name.count(".") == 1


def _content_hash(files: list[tuple[str, str]]) -> str:
    """The hash of (absolute path, path in the pipeline folder) files: their names in the folder and contents."""
    digest = hashlib.sha256()
    for path, name in files:
        digest.update(name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


@lru_cache(maxsize=32)
def _stamped_hash(stamps: tuple) -> str:
    """The content hash of files by their (path, name in the folder, size, mtime) stamp, remembered across processes in
    ~/.cache/livo so that SD1.5's 4 GB are read once per machine, not once per worker."""
    key = hashlib.sha256(repr(stamps).encode()).hexdigest()
    known = json.loads(_WEIGHT_IDS.read_text()) if _WEIGHT_IDS.is_file() else {}
    if key not in known:
        known[key] = _content_hash([(path, name) for path, name, _, _ in stamps])
        _WEIGHT_IDS.parent.mkdir(parents=True, exist_ok=True)
        temporary = _WEIGHT_IDS.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(known))
        temporary.replace(_WEIGHT_IDS)
    return known[key]


def weights_id(profile_or_path: str, part: str | None = None) -> str:
    """A content hash of the files a base model loads (all parts, or one part such as "vae"): what makes two copies
    of a model the same, whatever their names or extra files."""
    folder = local_folder(profile_or_path)
    files = pipeline_files(folder, part)
    if not any(f.suffix == ".safetensors" for f in files):
        raise ModelNotAvailableError(
            f"no safetensors weights in {folder / (part or '')}: expected a diffusers pipeline folder"
        )
    stamps = tuple(
        (str(f.resolve()), str(f.relative_to(folder)), f.stat().st_size, f.stat().st_mtime_ns) for f in files
    )
    return _stamped_hash(stamps)


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

    Hub ids resolve from the local Hugging Face cache first, then the hub; with no network the error says how to
    get the weights. Defaults: fp16 on GPU, fp32 on CPU.
    """
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)
    source = local_folder(profile_or_path)
    check_pipeline_folder(source)
    try:
        pipeline = StableDiffusionPipeline.from_pretrained(
            source, dtype=dtype, safety_checker=None, requires_safety_checker=False, use_safetensors=True
        )
    except (OSError, ValueError) as error:
        raise ModelNotAvailableError(
            f"cannot load the diffusion pipeline {str(source)!r} ({type(error).__name__}: {str(error)[:200]}): "
            "check that the folder holds a complete diffusers pipeline in safetensors"
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


def tune_unet(unet: torch.nn.Module, channels_last: bool = False, compile_unet: bool = False) -> torch.nn.Module:
    """The frozen UNet, faster but computing the same: channels-last memory format (in place) and torch.compile with
    static shapes (compiled on its first call of each shape; the returned module shares the weights)."""
    if channels_last:
        unet.to(memory_format=torch.channels_last)
    return torch.compile(unet, mode="default", dynamic=False) if compile_unet else unet
