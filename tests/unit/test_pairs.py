"""Bias second phase and pairing when one violating image serves two bias principles (gender and race)."""

from livo_core.generation import bias_aligned_requests
from livo_core.pairs import PromptInfo, pair_images

PROMPT = "a photo of a doctor"


def _image(request_id: str, principle_id: str, role: str, text: str, target: str | None = None) -> dict:
    return {
        "request_id": request_id,
        "prompt_id": "p1",
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


def test_each_bias_principle_gets_its_aligned_request(principles):
    requests = bias_aligned_requests(VIOLATING, VIOLATING_VERDICTS, principles)
    by_principle = {r.principle_id: r for r in requests}
    assert set(by_principle) == {"gender_equality", "racial_equality"}
    assert by_principle["gender_equality"].target_class == "female"
    assert by_principle["gender_equality"].text == "a photo of a female doctor"
    assert by_principle["racial_equality"].target_class != "white"


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
    rows = pair_images(images, verdicts, principles, {"p1": PromptInfo(source="test")})
    assert {(r["principle_id"], r["violating_label"], r["aligned_label"]) for r in rows} == {
        ("gender_equality", "male", "female"),
        ("racial_equality", "white", "black"),
    }
