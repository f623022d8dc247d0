"""The reference evaluation protocol: D1/D2 for bias, Avg.R/Avg.S/Max/Prob for toxicity, per method.

Evaluation sets: the shapes world's held-out prompts (with an exact prompt-adherence check), or, for real models,
the test split of a build-dataset folder, scored by each principle's judge for that world.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean
from typing import Literal

import numpy as np

from livo_core.baselines import SafeLatentDiffusion
from livo_core.config import EvalConfig
from livo_core.judges import CLIPAttributeJudge, Judge
from livo_core.judges.shapes import ShapesJudge, read_image
from livo_core.judging import JudgePool
from livo_core.metrics import mean_bias_discrepancy, mean_toxicity_metrics
from livo_core.models.loading import load_base_pipeline
from livo_core.pipeline import GenerationSettings, LivoPipeline, shared_value_dropout, values_for
from livo_core.principles import Principle, PrincipleSet, load_principles
from livo_core.prompts import file_prompts
from livo_core.quality import clip_scores
from livo_core.retrieval import Retrieval, Retriever
from livo_core.schema import PAIRS, read_table
from livo_core.shapes.prompts import eval_prompts, world_principles

logger = logging.getLogger(__name__)


def image_seeds(seed: int, prompt_index: int, n: int) -> list[int]:
    """Fixed per-image seeds: the same for every method, so methods are compared on the same noise."""
    return [seed * 10_000_000 + prompt_index * 10_000 + i for i in range(n)]


ValueMode = Literal["none", "oracle", "retrieved"]


@dataclass(frozen=True)
class Method:
    """One row of the comparison table: a value encoder (or none), how each prompt's value is picked, and whether
    the principle's negative prompt replaces the empty unconditional text."""

    name: str
    value_encoder: str | None = None  # a checkpoint or export folder
    value: ValueMode = "none"
    negative_prompt: bool = False
    safe_latent_diffusion: bool = False  # generate with diffusers' StableDiffusionPipelineSafe instead


def standard_methods(checkpoints: dict[str, str], with_sld: bool = False) -> list[Method]:
    """Base, base + negative prompt, (SLD,) LiVO with the oracle and the retrieved value, each other loss (oracle)."""
    methods = [Method("base"), Method("negative prompt", negative_prompt=True)]
    if with_sld:
        methods.append(Method("safe latent diffusion", safe_latent_diffusion=True))
    for loss, checkpoint in checkpoints.items():
        if loss == "livo":
            methods += [
                Method("livo (oracle value)", checkpoint, "oracle"),
                Method("livo (retrieved value)", checkpoint, "retrieved"),
            ]
        else:
            methods.append(Method(f"{loss} (oracle value)", checkpoint, "oracle"))
    return methods


def _values(
    method: Method,
    target: Principle,
    prompt: str,
    seeds: list[int],
    retriever: Retriever | None,
    principles: PrincipleSet,
    bias_dropout: float,
) -> tuple[list[Principle | None], float, bool]:
    """Each image's principle, the value dropout, and whether the retrieval found the target principle."""
    if method.value == "none":
        return [None] * len(seeds), 0.0, False
    if method.value == "oracle":
        return [target] * len(seeds), bias_dropout if target.category == "bias" else 0.0, True
    if retriever is None:
        raise ValueError(f"method {method.name!r} retrieves its value: pass a retriever")
    retrieval = retriever.retrieve(prompt) or _NONE
    values = values_for(retrieval, seeds, principles)
    bias = [i for i in retrieval.principle_ids if principles.get(i).category == "bias"]
    dropout = shared_value_dropout(bias_dropout, len(bias)) if bias else 0.0
    return values, dropout, target.id in retrieval.principle_ids


@dataclass(frozen=True)
class EvalSet:
    """One principle's evaluation prompts, the judge of their images and, where the world knows it, a check that an
    image shows what its prompt asked (prompt index, image) -> bool."""

    principle: Principle
    prompts: tuple[str, ...]
    judge: Judge
    adherent: Callable[[int, np.ndarray], bool] | None = None
    source: str = ""  # where the prompts come from, when not the world's own set ("i2p.csv")

    @property
    def name(self) -> str:
        return f"{self.principle.id} ({self.source})" if self.source else self.principle.id


def shapes_eval_sets(principles: PrincipleSet, split: str = "heldout") -> list[EvalSet]:
    """The shapes world's held-out (or training) prompts of every principle it renders, judged exactly."""
    sets, judge = [], ShapesJudge()
    for principle in world_principles(principles):
        prompts = eval_prompts(principle, split)
        sets.append(
            EvalSet(
                principle,
                tuple(p.text for p in prompts),
                judge,
                lambda i, image, ps=prompts: read_image(image).matches(ps[i]),
            )
        )
    return sets


def dataset_eval_sets(principles: PrincipleSet, dataset: str | Path, world: str, split: str = "test") -> list[EvalSet]:
    """The prompts of a build-dataset folder's `split`, per principle, judged by the principle's `world` judge."""
    rows = read_table(Path(dataset) / "pairs.parquet", PAIRS).select(["prompt", "principle_id", "split"]).to_pylist()
    pool, sets = JudgePool(world), []
    for principle in principles.principles:
        prompts = tuple(
            dict.fromkeys(r["prompt"] for r in rows if r["principle_id"] == principle.id and r["split"] == split)
        )
        if prompts:
            sets.append(EvalSet(principle, prompts, pool.for_principle(principle)))
    if not sets:
        raise ValueError(f"{dataset} has no pairs in split {split!r} to evaluate on: build a larger dataset")
    return sets


def file_eval_sets(
    principles: PrincipleSet, path: str | Path, world: str, retriever: Retriever, prompt_column: str = "prompt"
) -> list[EvalSet]:
    """Prompts of a file, one set per principle: an I2P row's categories name its principle, other prompts get
    what `retriever` finds (every principle it returns); prompts with none are left out."""
    by_principle: dict[str, list[str]] = {}
    rows = file_prompts(path, prompt_column)
    failed = [f"{row.source_ref}: {row.failure_reason}" for row in rows if row.status != "ok"]
    if failed:
        logger.warning("%s: %d prompts left out of the evaluation, e.g. %s", path, len(failed), "; ".join(failed[:3]))
    for row in rows:
        if row.status != "ok":
            continue
        ids = (row.principle_hint,) if row.principle_hint else (retriever.retrieve(row.prompt) or _NONE).principle_ids
        for principle_id in ids:
            by_principle.setdefault(principle_id, []).append(row.prompt)
    if not by_principle:
        raise ValueError(f"no prompt of {path} maps to a principle: nothing to evaluate there")
    pool = JudgePool(world)
    return [
        EvalSet(
            principles.get(pid),
            tuple(dict.fromkeys(prompts)),
            pool.for_principle(principles.get(pid)),
            source=Path(path).name,
        )
        for pid, prompts in by_principle.items()
    ]


_NONE = Retrieval(None, "none", None, "undecided")


def evaluate_principle(
    pipeline: LivoPipeline,
    method: Method,
    eval_set: EvalSet,
    config: EvalConfig,
    seed: int,
    retriever: Retriever | None = None,
    clip: CLIPAttributeJudge | None = None,
) -> dict:
    """Metrics of one principle's prompts under one method; adherence is None where the world cannot check it.
    With `clip`: the CLIP score, and the images' CLIP features under "_features" (for FID against another method)."""
    principles, target = load_principles(), eval_set.principle
    settings = GenerationSettings(
        steps=config.steps,
        guidance_scale=config.guidance_scale,
        batch_size=config.batch_size,
        negative_prompt=target.negative_prompt if method.negative_prompt else "",
    )
    n, texts, seeds, values, dropouts, found = config.images_per_prompt, [], [], [], [], []
    for index, prompt in enumerate(eval_set.prompts):  # every prompt in one generate call: full batches
        prompt_seeds = image_seeds(seed, index, n)
        prompt_values, dropout, hit = _values(
            method, target, prompt, prompt_seeds, retriever, principles, config.value_dropout
        )
        texts, seeds, values, found = texts + [prompt] * n, seeds + prompt_seeds, values + prompt_values, found + [hit]
        dropouts += [dropout] * n  # each prompt's own: its retrieval may find one bias principle or two
    all_images, _ = pipeline.generate(texts, seeds, values, dropouts, settings)
    per_prompt, adherent = [], []
    for index in range(len(eval_set.prompts)):
        images = all_images[index * n : (index + 1) * n]
        verdicts = eval_set.judge.judge(list(images), target)
        if eval_set.adherent is not None:
            adherent += [eval_set.adherent(index, image) for image in images]
        if target.category == "bias":
            counts = Counter(v.label for v in verdicts)
            per_prompt.append([counts.get(c, 0) for c in target.classes])
        else:
            per_prompt.append([v.score for v in verdicts])
    result = {
        "adherence": fmean(adherent) if adherent else None,
        "prompts": len(eval_set.prompts),
        "value_found": fmean(found),
        "judge": {"name": eval_set.judge.name, "version": eval_set.judge.version, "threshold": target.threshold},
    }
    if target.category == "bias":
        d1, d2 = mean_bias_discrepancy([c for c in per_prompt if sum(c)])
        result.update(d1=d1, d2=d2, class_share=_class_share(per_prompt, target))
    else:
        result.update(mean_toxicity_metrics(per_prompt, threshold=target.threshold))
    if clip is not None:
        features, prompt_features = clip.image_features(list(all_images)), clip.text_features(list(eval_set.prompts))
        result["clip_score"] = float(clip_scores(features, prompt_features.repeat_interleave(n, dim=0)).mean())
        result["_features"] = features.numpy()
    return result


def _class_share(per_prompt: list[list[int]], principle: Principle) -> dict[str, float]:
    totals = [sum(c[k] for c in per_prompt) for k in range(len(principle.classes))]
    return {cls: total / max(1, sum(totals)) for cls, total in zip(principle.classes, totals, strict=True)}


def evaluate(
    pipeline: LivoPipeline,
    eval_sets: list[EvalSet],
    config: EvalConfig,
    method: Method = Method("base"),
    retriever: Retriever | None = None,
) -> dict:
    """Every evaluation set, every seed; summary = mean (and spread over seeds) of D1, toxic ratio, adherence."""
    clip = CLIPAttributeJudge(config.clip_model, config.clip_pretrained) if config.clip_model else None
    runs, features = [], []
    for seed in config.seeds:
        run = {s.name: evaluate_principle(pipeline, method, s, config, seed, retriever, clip) for s in eval_sets}
        features += [r.pop("_features") for r in run.values() if "_features" in r]
        runs.append(run)
    result = {
        "method": asdict(method),
        "per_seed": runs,
        "summary": summarize(runs, {s.name: s.principle.category for s in eval_sets}),
        "config": config.model_dump(mode="json"),
        "retriever": getattr(retriever, "name", None) if method.value == "retrieved" else None,
    }
    if features:
        result["clip_features"] = np.concatenate(features)  # (N, D): not JSON, the caller stores it
    return result


def evaluate_method(
    method: Method, base_model: str, eval_sets: list[EvalSet], config: EvalConfig, retriever: Retriever | None = None
) -> dict:
    """Load the method's pipeline and evaluate it."""
    if method.safe_latent_diffusion:
        pipeline = SafeLatentDiffusion(load_base_pipeline(base_model))
    else:
        pipeline = LivoPipeline.from_pretrained(base_model, method.value_encoder)
    return evaluate(pipeline, eval_sets, config, method, retriever)


def summarize(runs: list[dict], categories: dict[str, str]) -> dict[str, float]:
    """Headline numbers: bias D1 (mean over bias principles), toxic ratio Avg.R, adherence; mean and std over seeds.
    A number no evaluation set measures is NaN (say, adherence where the world cannot check it)."""

    def mean(values: list) -> float:
        values = [v for v in values if v is not None]
        return fmean(values) if values else float("nan")

    def headline(run: dict) -> dict[str, float]:
        bias = [v for k, v in run.items() if categories[k] == "bias"]
        toxic = [v for k, v in run.items() if categories[k] == "toxicity"]
        return {
            "d1": mean([v["d1"] for v in bias]),
            "d2": mean([v["d2"] for v in bias]),
            "toxic_ratio": mean([v["avg_r"] for v in toxic]),
            "toxic_score": mean([v["avg_s"] for v in toxic]),
            "adherence": mean([v["adherence"] for v in run.values()]),
            "value_found": mean([v["value_found"] for v in run.values()]),
            "clip_score": mean([v.get("clip_score") for v in run.values()]),
        }

    heads = [headline(r) for r in runs]
    summary = {k: fmean(h[k] for h in heads) for k in heads[0]}
    summary.update({f"{k}_std": float(np.std([h[k] for h in heads])) for k in heads[0]})  # NaN stays NaN
    return summary


def write_results(results: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    return path
