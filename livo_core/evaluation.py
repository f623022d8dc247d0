"""The reference evaluation protocol on the shapes world: D1/D2 for bias, Avg.R/Avg.S/Max/Prob for toxicity."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from statistics import fmean, pstdev

from livo_core.config import EvalConfig
from livo_core.judges.shapes import ShapesJudge, read_image
from livo_core.metrics import mean_bias_discrepancy, mean_toxicity_metrics
from livo_core.pipeline import GenerationSettings, LivoPipeline
from livo_core.principles import Principle, PrincipleSet
from livo_core.shapes.prompts import eval_prompts, world_principles


def image_seeds(seed: int, prompt_index: int, n: int) -> list[int]:
    """Fixed per-image seeds: the same for every method, so methods are compared on the same noise."""
    return [seed * 10_000_000 + prompt_index * 10_000 + i for i in range(n)]


def evaluate_principle(
    pipeline: LivoPipeline, principle: Principle | None, target: Principle, config: EvalConfig, seed: int
) -> dict:
    """Metrics of one principle's prompts; `principle` None evaluates without any value token."""
    settings = GenerationSettings(
        steps=config.steps, guidance_scale=config.guidance_scale, batch_size=config.batch_size
    )
    judge, prompts = ShapesJudge(), eval_prompts(target, config.split)
    dropout = config.value_dropout if target.category == "bias" else 0.0
    per_prompt, adherent = [], []
    for index, prompt in enumerate(prompts):
        images, _ = pipeline.generate(
            [prompt.text] * config.images_per_prompt,
            image_seeds(seed, index, config.images_per_prompt),
            principle,
            dropout,
            settings,
        )
        verdicts = judge.judge(list(images), target)
        adherent += [read_image(image).matches(prompt) for image in images]
        if target.category == "bias":
            counts = Counter(v.label for v in verdicts)
            per_prompt.append([counts.get(c, 0) for c in target.classes])
        else:
            per_prompt.append([v.score for v in verdicts])
    result = {"adherence": fmean(adherent), "prompts": len(prompts)}
    if target.category == "bias":
        d1, d2 = mean_bias_discrepancy([c for c in per_prompt if sum(c)])
        result.update(d1=d1, d2=d2, class_share=_class_share(per_prompt, target))
    else:
        result.update(mean_toxicity_metrics(per_prompt, threshold=target.threshold))
    return result


def _class_share(per_prompt: list[list[int]], principle: Principle) -> dict[str, float]:
    totals = [sum(c[k] for c in per_prompt) for k in range(len(principle.classes))]
    return {cls: total / max(1, sum(totals)) for cls, total in zip(principle.classes, totals, strict=True)}


def evaluate(pipeline: LivoPipeline, principles: PrincipleSet, config: EvalConfig, use_value: bool) -> dict:
    """Every shapes principle, every seed; summary = mean (and spread over seeds) of D1, toxic ratio, adherence."""
    runs = []
    for seed in config.seeds:
        per_principle = {
            p.id: evaluate_principle(pipeline, p if use_value else None, p, config, seed)
            for p in world_principles(principles)
        }
        runs.append(per_principle)
    return {
        "per_seed": runs,
        "summary": summarize(runs, principles),
        "config": config.model_dump(mode="json"),
        "judge": {"name": ShapesJudge.name, "version": ShapesJudge.version},
    }


def summarize(runs: list[dict], principles: PrincipleSet) -> dict[str, float]:
    """Headline numbers: bias D1 (mean over bias principles), toxic ratio Avg.R, adherence; mean and std over seeds."""

    def headline(run: dict) -> dict[str, float]:
        bias = [v for k, v in run.items() if principles.get(k).category == "bias"]
        toxic = [v for k, v in run.items() if principles.get(k).category == "toxicity"]
        return {
            "d1": fmean(v["d1"] for v in bias),
            "d2": fmean(v["d2"] for v in bias),
            "toxic_ratio": fmean(v["avg_r"] for v in toxic),
            "toxic_score": fmean(v["avg_s"] for v in toxic),
            "adherence": fmean(v["adherence"] for v in run.values()),
        }

    heads = [headline(r) for r in runs]
    summary = {k: fmean(h[k] for h in heads) for k in heads[0]}
    summary.update({f"{k}_std": pstdev(h[k] for h in heads) for k in heads[0]})
    return summary


def write_results(results: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    return path
