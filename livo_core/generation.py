"""Dataset-scale image generation: stable shards of requests, PNGs and latents by content hash, resumable."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from livo_core.debias import MIN_FAMILY_IMAGES, BiasPlan, draw_class, plan_families
from livo_core.models.loading import scheduler_provenance
from livo_core.pipeline import GenerationSettings, LivoPipeline
from livo_core.schema import IMAGES, read_table, write_table
from livo_core.storage import LatentCache, content_id, save_image

SHARDS_DIR = "shards"


@dataclass(frozen=True)
class ModelIdentity:
    """What makes the images of a base model what they are: a hash of its weights, dtype and sampler (its name is
    kept for provenance only: two copies of one model, under any path, make the same images)."""

    name: str  # profile, folder or hub id, as configured
    weights: str  # content hash of the weight and config files (`weights_id`)
    dtype: str
    sampler: str
    vae: str  # content hash of the VAE's files: the latents' key

    @property
    def key(self) -> str:
        return f"{self.weights}|{self.dtype}|{self.sampler}"


@dataclass(frozen=True)
class ImageRequest:
    """One image to generate: which prompt it serves, in which role, from which text and seed."""

    prompt_id: str
    principle_id: str
    role: str  # "violating" (the raw prompt) | "aligned" (the value-conformant prompt)
    text: str
    seed: int
    target_class: str | None = None

    def request_id(self, model: ModelIdentity, settings: GenerationSettings) -> str:
        return content_id(f"{self.text}|{self.seed}|{model.key}|{json.dumps(asdict(settings), sort_keys=True)}")


def shard_requests(requests: Sequence[ImageRequest], shard_size: int) -> list[list[ImageRequest]]:
    """Requests in a canonical order, cut into shards: the same request set always gives the same shards."""
    ordered = sorted(set(requests), key=lambda r: (r.prompt_id, r.principle_id, r.role, r.seed, r.target_class or ""))
    return [ordered[i : i + shard_size] for i in range(0, len(ordered), shard_size)]


def shard_path(root: Path, shard: Sequence[ImageRequest], model: ModelIdentity, settings: GenerationSettings) -> Path:
    key = content_id("|".join(r.request_id(model, settings) for r in shard))
    return root / SHARDS_DIR / f"images-{key}.parquet"


def generate_shard(
    pipeline: LivoPipeline,
    shard: Sequence[ImageRequest],
    root: Path,
    model: ModelIdentity,
    settings: GenerationSettings,
) -> Path:
    """Generate one shard (PNG + latent per image) unless its table already exists; returns the table path. Each
    row's `generation` records the settings, the sampler (class and config), dtype and weights."""
    path = shard_path(root, shard, model, settings)
    if path.is_file():
        return path
    images = pipeline.generate([r.text for r in shard], [r.seed for r in shard], settings=settings)
    provenance = {
        **asdict(settings),
        "scheduler": scheduler_provenance(pipeline.base),
        "dtype": model.dtype,
        "weights": model.weights,
        "vae": model.vae,
    }
    rows = []
    for request, image in zip(shard, images, strict=True):
        relative, sha = save_image(image, root)
        rows.append(
            {
                **asdict(request),
                "request_id": request.request_id(model, settings),
                "image_path": relative,
                "image_sha256": sha,
                "base_model": model.name,
                "shard": path.stem,
                "status": "ok",
                "failure_reason": None,
                "generation": json.dumps(provenance, sort_keys=True, default=str),
            }
        )
    LatentCache(root, model.vae).store(pipeline.base.vae, images, [row["image_sha256"] for row in rows])
    return write_table(rows, path, IMAGES, meta={"base_model": model.name, "model": asdict(model)})


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


def bias_plans(
    violating: Sequence[dict],
    judgments: Sequence[dict],
    principles,
    family_of: Mapping[str, str | None],
    share: float | None = None,
    min_family_images: int = MIN_FAMILY_IMAGES,
) -> dict[tuple[str, str | None], BiasPlan]:
    """The debias plan of every bias principle, per prompt family with enough judged violating (base) images and
    overall (family None): p measured on those images, the value share (None: calibrated) and the targets q."""
    label = _ok_labels(judgments)
    labels: dict[str, dict[str | None, list[str]]] = defaultdict(lambda: defaultdict(list))
    for row in violating:
        principle = principles.get(row["principle_id"])
        if principle.category == "bias" and label.get((row["request_id"], principle.id)) in principle.classes:
            labels[principle.id][family_of.get(row["prompt_id"])].append(label[(row["request_id"], principle.id)])
    return {
        (principle_id, family): plan
        for principle_id, by_family in sorted(labels.items())
        for family, plan in plan_families(
            principle_id, by_family, principles.get(principle_id).classes, share, min_family_images
        ).items()
    }


def plan_for(plans: Mapping[tuple[str, str | None], BiasPlan], principle_id: str, family: str | None) -> BiasPlan:
    """The family's own plan where it has one, else the principle's."""
    return plans.get((principle_id, family)) or plans[(principle_id, None)]


def bias_aligned_requests(
    violating: Sequence[dict],
    judgments: Sequence[dict],
    principles,
    plans: Mapping[tuple[str, str | None], BiasPlan],
    family_of: Mapping[str, str | None],
) -> list[ImageRequest]:
    """Second phase for bias: an aligned image for each judged violating image of an over-represented class.

    Its target class is drawn with the image's seed from the plan's targets for the class it shows (never that
    class), so that the aligned images of all pairs follow q.
    """
    label, requests = _ok_labels(judgments), []
    for row in violating:
        principle = principles.get(row["principle_id"])
        if principle.category != "bias" or (principle.id, None) not in plans:
            continue
        plan = plan_for(plans, principle.id, family_of.get(row["prompt_id"]))
        shown = label.get((row["request_id"], principle.id))
        if shown not in plan.violating_classes:
            continue
        target = draw_class(plan.targets[shown], f"{principle.id}|{row['prompt_id']}|{row['seed']}")
        text = explicit_prompt(row["text"], target)
        requests.append(ImageRequest(row["prompt_id"], principle.id, "aligned", text, row["seed"], target))
    return requests


def _ok_labels(judgments: Sequence[dict]) -> dict[tuple[str, str], str]:
    """The label of each (image request, principle); one violating image serves every bias principle of its prompt."""
    return {(j["request_id"], j["principle_id"]): j["label"] for j in judgments if j["status"] == "ok"}
