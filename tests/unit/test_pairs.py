"""Bias second phase and pairing: targets from the measured distribution, violating means over-represented, and one
violating image serving two bias principles (gender and race)."""

import math
import random
from collections import Counter

import pytest

from livo_core.generation import bias_aligned_requests, bias_plans
from livo_core.pairs import PromptInfo, pair_images
from livo_core.principles import PrincipleSet

PROMPT = "a photo of a doctor"


def _image(
    request_id: str, principle_id: str, role: str, text: str, target: str | None = None, prompt_id: str = "p1"
) -> dict:
    return {
        "request_id": request_id,
        "prompt_id": prompt_id,
        "principle_id": principle_id,
        "role": role,
        "text": text,
        "seed": 7,
        "target_class": target,
        "status": "ok",
        "image_path": f"images/{request_id}.png",
        "image_sha256": request_id,
        "base_model": "shapes",
        "generation": "{}",
    }


def _judgment(request_id: str, principle_id: str, label: str) -> dict:
    return {
        "request_id": request_id,
        "principle_id": principle_id,
        "label": label,
        "score": 1.0,
        "status": "ok",
        "judge_name": "shapes",
        "judge_version": "1",
    }


# The same image (request "v") is the violating image of both principles, judged once per principle.
VIOLATING = [_image("v", "gender_equality", "violating", PROMPT), _image("v", "racial_equality", "violating", PROMPT)]
VIOLATING_VERDICTS = [_judgment("v", "gender_equality", "male"), _judgment("v", "racial_equality", "white")]


def _skewed_base(principles, shares: dict[str, float], n: int = 3000) -> tuple[list[dict], list[dict]]:
    """n judged violating images of n prompts (one family), race labels drawn from `shares`."""
    rng, images, verdicts = random.Random(0), [], []
    classes, weights = list(shares), list(shares.values())
    for i in range(n):
        images.append({**_image(f"v{i}", "racial_equality", "violating", PROMPT, prompt_id=f"p{i}"), "seed": i})
        verdicts.append(_judgment(f"v{i}", "racial_equality", rng.choices(classes, weights)[0]))
    return images, verdicts


def _targets(principles, images, verdicts) -> tuple[Counter, dict]:
    family = {row["prompt_id"]: "occupations" for row in images}
    plans = bias_plans(images, verdicts, principles, family)
    requests = bias_aligned_requests(images, verdicts, principles, plans, family)
    return Counter(r.target_class for r in requests), plans[("racial_equality", None)]


SKEWS = {
    "60-10-10-10-10": {"white": 0.6, "black": 0.1, "indian": 0.1, "asian": 0.1, "latino": 0.1},
    "shipped": {"white": 0.24, "black": 0.044, "indian": 0.134, "asian": 0.0, "latino": 0.582},
}


@pytest.mark.parametrize("skew", SKEWS, ids=list(SKEWS))
def test_aligned_targets_follow_q_from_the_measured_distribution(principles, skew):
    images, verdicts = _skewed_base(principles, SKEWS[skew])
    targets, plan = _targets(principles, images, verdicts)
    n = sum(targets.values())
    assert n == sum(1 for v in verdicts if v["label"] in plan.violating_classes)  # one per over-represented image
    for c, share in plan.q.items():  # within sampling error of q, so no class gets more than its share
        assert abs(targets[c] - n * share) <= 4 * math.sqrt(n * share * (1 - share)) + 1, (c, targets, plan.q)
    majority = max(plan.p, key=plan.p.get)
    assert targets[majority] == 0 and len([c for c in targets if targets[c] > 0.05 * n]) >= 3
    # the same draws whatever the order of the classes in principles.yaml
    reordered = PrincipleSet(
        version=principles.version,
        principles=tuple(
            p.model_copy(update={"classes": tuple(reversed(p.classes))}) if p.id == "racial_equality" else p
            for p in principles.principles
        ),
    )
    assert _targets(reordered, images, verdicts)[0] == targets


def test_each_bias_principle_gets_its_aligned_request(principles):
    family = {"p1": None}
    plans = {  # a measured base model that draws men and white people
        **bias_plans(*_skewed_base(principles, SKEWS["60-10-10-10-10"], 200), principles, {}),
        **bias_plans(
            [_image(f"g{i}", "gender_equality", "violating", PROMPT, prompt_id=f"g{i}") for i in range(10)],
            [_judgment(f"g{i}", "gender_equality", "male" if i < 9 else "female") for i in range(10)],
            principles,
            {},
        ),
    }
    requests = bias_aligned_requests(VIOLATING, VIOLATING_VERDICTS, principles, plans, family)
    by_principle = {r.principle_id: r for r in requests}
    assert set(by_principle) == {"gender_equality", "racial_equality"}
    assert by_principle["gender_equality"].target_class == "female"
    assert by_principle["gender_equality"].text == "a photo of a female doctor"
    assert by_principle["racial_equality"].target_class != "white"


def test_an_under_represented_violating_image_is_never_paired(principles):
    plans = bias_plans(*_skewed_base(principles, SKEWS["60-10-10-10-10"], 500), principles, {})
    images = [
        _image("v-white", "racial_equality", "violating", PROMPT, prompt_id="p1"),
        _image("a-white", "racial_equality", "aligned", "a photo of a black doctor", "black", prompt_id="p1"),
        {**_image("v-asian", "racial_equality", "violating", PROMPT, prompt_id="p2"), "seed": 8},
        {**_image("a-asian", "racial_equality", "aligned", "a photo of a black doctor", "black", "p2"), "seed": 8},
    ]
    verdicts = [
        _judgment("v-white", "racial_equality", "white"),
        _judgment("a-white", "racial_equality", "black"),
        _judgment("v-asian", "racial_equality", "asian"),  # asian is 10% of the base images: under-represented
        _judgment("a-asian", "racial_equality", "black"),
    ]
    info = {"p1": PromptInfo(source="test"), "p2": PromptInfo(source="test")}
    rows = pair_images(images, verdicts, principles, info, plans)
    assert [(r["violating_label"], r["aligned_label"]) for r in rows] == [("white", "black")]
    assert bias_aligned_requests(images[2:3], verdicts[2:3], principles, plans, {}) == []


def test_pairs_for_both_principles_from_one_violating_image(principles):
    images = [
        *VIOLATING,
        _image("a-g", "gender_equality", "aligned", "a photo of a female doctor", "female"),
        _image("a-r", "racial_equality", "aligned", "a photo of a black doctor", "black"),
    ]
    verdicts = [
        *VIOLATING_VERDICTS,
        _judgment("a-g", "gender_equality", "female"),
        _judgment("a-r", "racial_equality", "black"),
    ]
    plans = {
        **bias_plans(*_skewed_base(principles, SKEWS["60-10-10-10-10"], 200), principles, {}),
        **bias_plans([VIOLATING[0]], [VIOLATING_VERDICTS[0]], principles, {}),
    }
    rows = pair_images(images, verdicts, principles, {"p1": PromptInfo(source="test")}, plans)
    assert {(r["principle_id"], r["violating_label"], r["aligned_label"]) for r in rows} == {
        ("gender_equality", "male", "female"),
        ("racial_equality", "white", "black"),
    }
