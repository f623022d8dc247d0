"""Dataset-scale image generation: stable shards of requests, PNGs and latents by content hash, resumable."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from livo_core.pipeline import GenerationSettings, LivoPipeline
from livo_core.schema import IMAGES, read_table, write_table
from livo_core.storage import cache_latents, content_id, save_image

SHARDS_DIR = "shards"


@dataclass(frozen=True)
class ImageRequest:
    """One image to generate: which prompt it serves, in which role, from which text and seed."""

    prompt_id: str
    principle_id: str
    role: str  # "violating" (the raw prompt) | "aligned" (the value-conformant prompt)
    text: str
    seed: int
    target_class: str | None = None

    def request_id(self, base_model: str, settings: GenerationSettings) -> str:
        return content_id(f"{self.text}|{self.seed}|{base_model}|{json.dumps(asdict(settings), sort_keys=True)}")


def shard_requests(requests: Sequence[ImageRequest], shard_size: int) -> list[list[ImageRequest]]:
    """Requests in a canonical order, cut into shards: the same request set always gives the same shards."""
    ordered = sorted(set(requests), key=lambda r: (r.prompt_id, r.principle_id, r.role, r.seed, r.target_class or ""))
    return [ordered[i : i + shard_size] for i in range(0, len(ordered), shard_size)]


def shard_path(root: Path, shard: Sequence[ImageRequest], base_model: str, settings: GenerationSettings) -> Path:
    key = content_id("|".join(r.request_id(base_model, settings) for r in shard))
    return root / SHARDS_DIR / f"images-{key}.parquet"


def generate_shard(
    pipeline: LivoPipeline, shard: Sequence[ImageRequest], root: Path, base_model: str, settings: GenerationSettings
) -> Path:
    """Generate one shard (PNG + latent per image) unless its table already exists; returns the table path."""
    path = shard_path(root, shard, base_model, settings)
    if path.is_file():
        return path
    images, _ = pipeline.generate([r.text for r in shard], [r.seed for r in shard], settings=settings)
    rows = []
    for request, image in zip(shard, images, strict=True):
        relative, sha = save_image(image, root)
        rows.append(
            {
                **asdict(request),
                "request_id": request.request_id(base_model, settings),
                "image_path": relative,
                "image_sha256": sha,
                "base_model": base_model,
                "shard": path.stem,
                "status": "ok",
                "failure_reason": None,
                "generation": json.dumps(asdict(settings), sort_keys=True),
            }
        )
    cache_latents(pipeline.base.vae, images, [row["image_sha256"] for row in rows], root)
    return write_table(rows, path, IMAGES, meta={"base_model": base_model})


def generate_images(
    pipeline: LivoPipeline,
    requests: Sequence[ImageRequest],
    root: Path,
    base_model: str,
    settings: GenerationSettings,
    shard_size: int = 256,
    on_shard: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """All shards of `requests`, generating only the missing ones; `on_shard(done, total)` reports progress."""
    shards = shard_requests(requests, shard_size)
    paths = []
    for index, shard in enumerate(shards):
        paths.append(generate_shard(pipeline, shard, root, base_model, settings))
        if on_shard:
            on_shard(index + 1, len(shards))
    return paths


def read_images(paths: Sequence[Path]) -> list[dict]:
    return [row for path in paths for row in read_table(path, IMAGES).to_pylist()]
