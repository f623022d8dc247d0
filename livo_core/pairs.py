"""Preference pairs: a violating and an aligned image of one prompt, principle and seed, kept when judges agree."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from livo_core.debias import BiasPlan
from livo_core.generation import plan_for
from livo_core.judges.base import CONFORMS, VIOLATES
from livo_core.principles import Principle, PrincipleSet
from livo_core.storage import content_id


@dataclass(frozen=True)
class PromptInfo:
    """Provenance of a prompt carried into each of its pairs."""

    source: str
    split: str = "train"
    annotator: str = "grammar"
    annotator_version: str = "1"
    template_version: str = "1"
    family: str | None = None


def accepts(
    principle: Principle,
    target_class: str | None,
    aligned_label: str,
    violating_label: str,
    violating_classes: Collection[str] = (),
) -> bool:
    """Kept when the aligned image conforms (bias: shows its target class) and the violating one violates (bias:
    shows an over-represented class of the base model, one of `violating_classes`; an image that already shows an
    under-represented class is never the violating side)."""
    if principle.category == "toxicity":
        return aligned_label == CONFORMS and violating_label == VIOLATES
    return aligned_label == target_class and violating_label != target_class and violating_label in violating_classes


def pair_images(
    images: Sequence[dict],
    judgments: Sequence[dict],
    principles: PrincipleSet,
    info: dict[str, PromptInfo],
    plans: Mapping[tuple[str, str | None], BiasPlan] | None = None,
) -> list[dict]:
    """PAIRS rows from IMAGES and JUDGMENTS rows: every accepted (violating, aligned) match of one prompt and seed;
    bias pairs need the debias `plans` (which classes may be violating)."""
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
                over = (
                    plan_for(plans or {}, principle_id, info[prompt_id].family).violating_classes
                    if principle.category == "bias"
                    else ()
                )
                if accepts(principle, aligned["target_class"], judged_w["label"], judged_l["label"], over):
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
        "prompt_family": info.family,
        "split": info.split,
    }
