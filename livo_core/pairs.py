"""Preference pairs: generate violating and aligned images with one seed, judge both, keep verified pairs."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from livo_core.judges.base import CONFORMS, VIOLATES, Judge, Verdict
from livo_core.pipeline import GenerationSettings, LivoPipeline
from livo_core.principles import Principle
from livo_core.schema import PAIRS, write_table


@dataclass(frozen=True)
class PairCandidate:
    """A prompt, its principle, the value-conformant prompt for the aligned image, and the shared seed."""

    prompt: str
    principle: Principle
    aligned_prompt: str
    seed: int
    split: str = "train"
    target_class: str | None = None  # bias: the attribute class the aligned image must show
    source: str = "shapes-grammar"


def content_id(text: str) -> str:
    """A short stable id from content (prompt ids, pair ids)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def accepts(candidate: PairCandidate, aligned: Verdict, violating: Verdict) -> bool:
    """A pair is kept when the aligned image conforms and the violating one violates."""
    if candidate.principle.category == "toxicity":
        return aligned.label == CONFORMS and violating.label == VIOLATES
    return aligned.label == candidate.target_class and violating.label not in ("none", candidate.target_class)


def save_image(image: np.ndarray, root: Path) -> tuple[str, str]:
    """Write a PNG addressed by its content hash; returns (relative path, sha256)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    data = buffer.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    relative = Path("images") / sha[:2] / f"{sha}.png"
    target = root / relative
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
    return str(relative), sha


def latent_path(root: Path, sha: str) -> Path:
    return root / "latents" / sha[:2] / f"{sha}.safetensors"


@torch.no_grad()
def cache_latents(pipeline: LivoPipeline, images: np.ndarray, shas: Sequence[str], root: Path) -> None:
    """Encode images with the frozen VAE once (posterior mean x scaling factor) and store them beside the PNGs."""
    vae = pipeline.base.vae
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).to(vae.device, vae.dtype) / 127.5 - 1.0
    latents = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor  # (N, 4, h, w)
    for latent, sha in zip(latents.float().cpu(), shas):
        path = latent_path(root, sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"latent": latent.contiguous()}, str(path))


def load_latent(root: Path, sha: str) -> torch.Tensor:
    path = latent_path(root, sha)
    if not path.is_file():
        raise FileNotFoundError(f"cached latent missing: {path} (re-run the latent caching step)")
    return load_file(str(path))["latent"]


def build_pairs(
    pipeline: LivoPipeline,
    candidates: Sequence[PairCandidate],
    judge: Judge,
    out_dir: str | Path,
    base_model: str,
    settings: GenerationSettings = GenerationSettings(),
    meta: dict | None = None,
) -> tuple[Path, dict[str, int]]:
    """Generate, judge and keep pairs; writes images, latents and `pairs.parquet` (with `meta`). Returns path, counts."""
    root = Path(out_dir)
    rows, counts = [], {"candidates": len(candidates), "kept": 0}
    for start in tqdm(range(0, len(candidates), settings.batch_size), desc="pairs", mininterval=5):
        chunk = candidates[start : start + settings.batch_size]
        seeds = [c.seed for c in chunk]
        violating, _ = pipeline.generate([c.prompt for c in chunk], seeds, settings=settings)
        aligned, _ = pipeline.generate([c.aligned_prompt for c in chunk], seeds, settings=settings)
        for i, candidate in enumerate(chunk):
            verdict_w = judge.judge([aligned[i]], candidate.principle)[0]
            verdict_l = judge.judge([violating[i]], candidate.principle)[0]
            if accepts(candidate, verdict_w, verdict_l):
                images = (aligned[i], violating[i])
                rows.append(store_pair(root, pipeline, candidate, images, (verdict_w, verdict_l), base_model, settings))
    counts["kept"] = len(rows)
    path = write_table(rows, root / "pairs.parquet", PAIRS, meta={"counts": counts, "base_model": base_model, **(meta or {})})
    return path, counts


def store_pair(
    root: Path,
    pipeline: LivoPipeline,
    candidate: PairCandidate,
    images: tuple[np.ndarray, np.ndarray],
    verdicts: tuple[Verdict, Verdict],
    base_model: str,
    settings: GenerationSettings,
) -> dict:
    """Save both images and their latents; returns the pair's PAIRS row (aligned first, violating second)."""
    (path_w, sha_w), (path_l, sha_l) = save_image(images[0], root), save_image(images[1], root)
    cache_latents(pipeline, np.stack(images), [sha_w, sha_l], root)
    verdict_w, verdict_l = verdicts
    principle = candidate.principle
    return {
        "pair_id": content_id(f"{candidate.prompt}|{principle.id}|{candidate.aligned_prompt}|{candidate.seed}|{base_model}"),
        "prompt_id": content_id(candidate.prompt),
        "prompt": candidate.prompt,
        "principle_id": principle.id,
        "value_text": principle.text,
        "category": principle.category,
        "aligned_prompt": candidate.aligned_prompt,
        "aligned_image": path_w,
        "aligned_sha256": sha_w,
        "violating_image": path_l,
        "violating_sha256": sha_l,
        "aligned_label": verdict_w.label,
        "aligned_score": verdict_w.score,
        "violating_label": verdict_l.label,
        "violating_score": verdict_l.score,
        "seed": candidate.seed,
        "base_model": base_model,
        "generation": json.dumps(asdict(settings), sort_keys=True),
        "judge_name": verdict_w.judge_name,
        "judge_version": verdict_w.judge_version,
        "prompt_source": candidate.source,
        "split": candidate.split,
    }
