"""Preference pairs: a violating and an aligned image of one prompt, principle and seed, kept when judges agree."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from livo_core.generation import ImageRequest, generate_images, read_images
from livo_core.judges.base import CONFORMS, VIOLATES
from livo_core.judging import JudgePool, judge_images
from livo_core.pipeline import GenerationSettings, LivoPipeline
from livo_core.principles import Principle, PrincipleSet, load_principles
from livo_core.schema import PAIRS, write_table
from livo_core.storage import content_id


@dataclass(frozen=True)
class PromptInfo:
    """Provenance of a prompt carried into each of its pairs."""

    source: str
    split: str = "train"
    annotator: str = "grammar"
    annotator_version: str = "1"
    template_version: str = "1"


@dataclass(frozen=True)
class PairCandidate:
    """A prompt, its principle, the value-conformant prompt for the aligned image, and the shared seed."""

    prompt: str
    principle: Principle
    aligned_prompt: str
    seed: int
    target_class: str | None = None  # bias: the attribute class the aligned image must show

    @property
    def prompt_id(self) -> str:
        return content_id(self.prompt)

    def requests(self) -> tuple[ImageRequest, ImageRequest]:
        violating = ImageRequest(self.prompt_id, self.principle.id, "violating", self.prompt, self.seed)
        aligned = ImageRequest(
            self.prompt_id, self.principle.id, "aligned", self.aligned_prompt, self.seed, self.target_class
        )
        return violating, aligned


def accepts(principle: Principle, target_class: str | None, aligned_label: str, violating_label: str) -> bool:
    """Kept when the aligned image conforms (or shows the target class) and the violating one violates."""
    if principle.category == "toxicity":
        return aligned_label == CONFORMS and violating_label == VIOLATES
    return aligned_label == target_class and violating_label not in ("none", target_class)


def pair_images(
    images: Sequence[dict], judgments: Sequence[dict], principles: PrincipleSet, info: dict[str, PromptInfo]
) -> list[dict]:
    """PAIRS rows from IMAGES and JUDGMENTS rows: every accepted (violating, aligned) match of one prompt and seed."""
    # An image shared by several principles (one violating image, gender and race) has a verdict for each.
    verdict = {(j["request_id"], j["principle_id"]): j for j in judgments if j["status"] == "ok"}
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for image in images:
        if image["status"] == "ok" and (image["request_id"], image["principle_id"]) in verdict:
            groups[(image["prompt_id"], image["principle_id"], image["seed"])][image["role"]].append(image)
    rows = []
    for (prompt_id, principle_id, _), roles in sorted(groups.items()):
        principle = principles.get(principle_id)
        for violating in roles["violating"]:
            for aligned in roles["aligned"]:
                judged_w = verdict[(aligned["request_id"], principle_id)]
                judged_l = verdict[(violating["request_id"], principle_id)]
                if accepts(principle, aligned["target_class"], judged_w["label"], judged_l["label"]):
                    rows.append(_pair_row(principle, aligned, violating, judged_w, judged_l, info[prompt_id]))
    return rows


def _pair_row(
    principle: Principle, aligned: dict, violating: dict, judged_w: dict, judged_l: dict, info: PromptInfo
) -> dict:
    return {
        "pair_id": content_id(f"{violating['request_id']}|{aligned['request_id']}|{principle.id}"),
        "prompt_id": violating["prompt_id"],
        "prompt": violating["text"],
        "principle_id": principle.id,
        "value_text": principle.text,
        "category": principle.category,
        "aligned_prompt": aligned["text"],
        "target_class": aligned["target_class"],
        "aligned_image": aligned["image_path"],
        "aligned_sha256": aligned["image_sha256"],
        "violating_image": violating["image_path"],
        "violating_sha256": violating["image_sha256"],
        "aligned_label": judged_w["label"],
        "aligned_score": judged_w["score"],
        "violating_label": judged_l["label"],
        "violating_score": judged_l["score"],
        "seed": violating["seed"],
        "base_model": violating["base_model"],
        "generation": violating["generation"],
        "judge_name": judged_w["judge_name"],
        "judge_version": judged_w["judge_version"],
        "annotator": info.annotator,
        "annotator_version": info.annotator_version,
        "template_version": info.template_version,
        "prompt_source": info.source,
        "split": info.split,
    }


def build_pairs(
    pipeline: LivoPipeline,
    candidates: Sequence[PairCandidate],
    out_dir: str | Path,
    base_model: str,
    settings: GenerationSettings,
    world: str = "shapes",
    info: PromptInfo = PromptInfo(source="shapes-grammar"),
    meta: dict | None = None,
) -> tuple[Path, dict[str, int]]:
    """Generate, judge and pair candidates in one go (the stages of the build-dataset flow, in-process)."""
    root, principles = Path(out_dir), load_principles()
    shards = generate_images(pipeline, [r for c in candidates for r in c.requests()], root, base_model, settings)
    images = read_images(shards)
    judgments = judge_images(images, principles, JudgePool(world), root)
    rows = pair_images(images, judgments, principles, {c.prompt_id: info for c in candidates})
    counts = {"candidates": len(candidates), "images": len(images), "kept": len(rows)}
    return write_table(rows, root / "pairs.parquet", PAIRS, meta={"counts": counts, **(meta or {})}), counts
