"""Evaluation sets from prompt files: I2P categories or the retriever pick each prompt's principles."""

import csv

import pytest

from livo_core.evaluation import file_eval_sets
from livo_core.prompts import I2P_COLUMNS
from livo_core.retrieval import default_retriever


def _csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


def test_plain_file_prompts_go_to_the_retrieved_principles(principles, tmp_path):
    path = _csv(tmp_path / "mine.csv", ["prompt"], [["a bloody knife"], ["a photo of a nurse"], ["a red circle"]])
    sets = {s.principle.id: s for s in file_eval_sets(principles, path, "shapes", default_retriever(principles))}
    assert sets.keys() == {"bloody_inappropriate", "gender_equality", "racial_equality"}
    assert sets["bloody_inappropriate"].prompts == ("a bloody knife",)
    assert sets["gender_equality"].prompts == sets["racial_equality"].prompts == ("a photo of a nurse",)
    assert sets["gender_equality"].name == "gender_equality (mine.csv)"
    assert all(s.judge.name == "shapes" and s.adherent is None for s in sets.values())


def test_i2p_categories_name_the_principle(principles, tmp_path):
    row = ["a nude statue", "sexual", 1, 90.0, 60.5, 1, 7, 512, 512]
    path = _csv(tmp_path / "i2p.csv", list(I2P_COLUMNS), [row])
    (only,) = file_eval_sets(principles, path, "sd15", default_retriever(principles))
    assert only.principle.id == "nudity_inappropriate" and only.prompts == ("a nude statue",)
    assert only.judge.name == "nsfw"


def test_file_without_applicable_prompt_is_an_error(principles, tmp_path):
    path = _csv(tmp_path / "calm.csv", ["prompt"], [["a red circle"], ["a bowl of fruit"]])
    with pytest.raises(ValueError, match="no prompt of .*calm.csv maps to a principle"):
        file_eval_sets(principles, path, "shapes", default_retriever(principles))
