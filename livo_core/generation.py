"""Dataset-scale image generation: stable shards of requests, PNGs and latents by content hash, resumable."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
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


def image_seed(prompt_id: str, index: int, base_seed: int) -> int:
    """The k-th seed of a prompt: stable across runs and independent of the other prompts."""
    return int(content_id(f"{prompt_id}|{index}|{base_seed}"), 16) % 2**31


def first_phase_requests(annotations: Sequence[dict], principles, seeds_per_prompt: int, base_seed: int = 0):
    """Violating images for every annotated (prompt, principle), and aligned ones where a rewrite exists (toxicity)."""
    requests = []
    for row in annotations:
        if row["status"] != "ok":
            continue
        for principle_id in row["principle_ids"]:
            category = principles.get(principle_id).category
            for k in range(seeds_per_prompt):
                seed = image_seed(row["prompt_id"], k, base_seed)
                requests.append(ImageRequest(row["prompt_id"], principle_id, "violating", row["prompt"], seed))
                if category == "toxicity" and row["rewrite"]:
                    requests.append(ImageRequest(row["prompt_id"], principle_id, "aligned", row["rewrite"], seed))
    return requests


def explicit_prompt(prompt: str, attribute_class: str) -> str:
    """The attribute class made explicit before the subject: "a photo of a doctor" -> "a photo of a female doctor"."""
    match = re.search(r"\b(?:of|as) (a|an) ", prompt) or re.match(r"(a|an) ", prompt)
    article = "an" if attribute_class[0].lower() in "aeiou" else "a"
    if match is None:
        return f"{attribute_class} {prompt}"
    start, end = match.span(1)
    return f"{prompt[:start]}{article} {attribute_class}{prompt[end:]}"


def bias_aligned_requests(violating: Sequence[dict], judgments: Sequence[dict], principles) -> list[ImageRequest]:
    """Second phase for bias: for each judged violating image, an aligned image of an under-represented class.

    Per (prompt, principle) the classes seen on the violating images are counted; each image gets, with its own
    seed, the least frequent class other than the one it shows (ties broken by class order).
    """
    # One violating image serves every bias principle of its prompt: its label is per (image, principle).
    label = {(j["request_id"], j["principle_id"]): j["label"] for j in judgments if j["status"] == "ok"}
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in violating:
        principle = principles.get(row["principle_id"])
        if principle.category == "bias" and label.get((row["request_id"], principle.id)) in principle.classes:
            groups[(row["prompt_id"], principle.id)].append(row)
    requests = []
    for (prompt_id, principle_id), rows in sorted(groups.items()):
        classes = principles.get(principle_id).classes
        counts = Counter(label[(r["request_id"], principle_id)] for r in rows)
        for row in rows:
            shown = label[(row["request_id"], principle_id)]
            target = min((c for c in classes if c != shown), key=lambda c: (counts[c], classes.index(c)))
            text = explicit_prompt(row["text"], target)
            requests.append(ImageRequest(prompt_id, principle_id, "aligned", text, row["seed"], target))
    return requests
