"""The reference evaluation protocol: D1/D2 for bias, Avg.R/Avg.S/Max/Prob for toxicity, per method.

Evaluation sets: the shapes world's held-out prompts (with an exact prompt-adherence check), or, for real models,
the test split of a build-dataset folder, scored by each principle's judge for that world.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean
from typing import Literal

import numpy as np

from livo_core.attack_prompts import attack_prompts
from livo_core.baselines import SafeLatentDiffusion
from livo_core.config import AttackSet, EvalConfig, JudgeConfig
from livo_core.dataset import split_of
from livo_core.debias import mean_floor
from livo_core.judges import CLIPAttributeJudge, Judge
from livo_core.judges.base import VIOLATES
from livo_core.judges.shapes import ShapesJudge, read_image
from livo_core.judges.vlm import scores_are_binary
from livo_core.judging import JudgePool
from livo_core.metrics import mean_bias_discrepancy, mean_toxicity_metrics
from livo_core.models.loading import load_base_pipeline
from livo_core.pipeline import GenerationSettings, LivoPipeline, assign_values, assignment_seed
from livo_core.principles import Principle, PrincipleSet, load_principles
from livo_core.prompts import check_tokens, file_prompts
from livo_core.quality import clip_scores
from livo_core.retrieval import NOT_DECIDED, Retriever
from livo_core.schema import ANNOTATIONS, PROMPTS, read_file_metadata, read_table
from livo_core.shapes.prompts import eval_prompts, world_principles

logger = logging.getLogger(__name__)


def image_seeds(seed: int, prompt_index: int, n: int) -> list[int]:
    """Fixed per-image seeds: the same for every method, so methods are compared on the same noise."""
    return [seed * 10_000_000 + prompt_index * 10_000 + i for i in range(n)]


ValueMode = Literal["none", "oracle", "retrieved"]
ShareMode = Literal["reference", "calibrated"]


@dataclass(frozen=True)
class Method:
    """One row of the comparison table: a value encoder (or none), how each prompt's value is picked and on which
    share of a bias prompt's images, and whether the principle's negative prompt replaces the empty unconditional
    text. `training_seed` names which of a loss's training runs the value encoder comes from."""

    name: str
    value_encoder: str | None = None  # a checkpoint or export folder
    value: ValueMode = "none"
    negative_prompt: bool = False
    safe_latent_diffusion: bool = False  # generate with diffusers' StableDiffusionPipelineSafe instead
    value_share: ShareMode = "reference"  # reference: EvalConfig.value_share; calibrated: the encoder's own
    bias_only: bool = False  # only the bias sets (a share changes nothing on toxicity prompts)
    training_seed: int | None = None

    def evaluates(self, eval_set: EvalSet) -> bool:
        return not self.bias_only or eval_set.principle.category == "bias"


def standard_methods(checkpoints: dict[str, dict[int, str]], with_sld: bool = False) -> list[Method]:
    """Base, base + negative prompt, (SLD,) and per training seed: LiVO with the oracle value (reference share and
    calibrated share) and the retrieved value (calibrated share, as `generate_aligned`), each other loss (oracle)."""
    methods = [Method("base"), Method("negative prompt", negative_prompt=True)]
    if with_sld:
        methods.append(Method("safe latent diffusion", safe_latent_diffusion=True))
    for loss, by_seed in checkpoints.items():
        for seed, checkpoint in by_seed.items():
            if loss == "livo":
                methods += [
                    Method("livo (oracle value)", checkpoint, "oracle", training_seed=seed),
                    Method(
                        "livo (oracle value, calibrated share)",
                        checkpoint,
                        "oracle",
                        value_share="calibrated",
                        bias_only=True,
                        training_seed=seed,
                    ),
                    Method(
                        "livo (retrieved value)", checkpoint, "retrieved", value_share="calibrated", training_seed=seed
                    ),
                ]
            else:
                methods.append(Method(f"{loss} (oracle value)", checkpoint, "oracle", training_seed=seed))
    return methods


def _values(
    method: Method,
    target: Principle,
    prompt: str,
    seeds: list[int],
    retriever: Retriever | None,
    principles: PrincipleSet,
    shares: dict[str, float],
) -> tuple[list[Principle | None], bool]:
    """Each image's principle, and whether the value picked for the prompt is the target principle."""
    if method.value == "none":
        return [None] * len(seeds), False
    if method.value == "oracle":
        found = (target.id,)
    elif retriever is None:
        raise ValueError(f"method {method.name!r} retrieves its value: pass a retriever")
    else:
        found = (retriever.retrieve(prompt) or NOT_DECIDED).principle_ids
    values = assign_values(found, principles, len(seeds), shares, assignment_seed(prompt, seeds))
    return values, target.id in found


@dataclass(frozen=True)
class EvalSet:
    """One principle's evaluation prompts, the judge of their images and, where the world knows it, a check that an
    image shows what its prompt asked (prompt index, image) -> bool."""

    principle: Principle
    prompts: tuple[str, ...]
    judge: Judge
    adherent: Callable[[int, np.ndarray], bool] | None = None
    source: str = ""  # where the prompts come from, when not the world's own set ("i2p.csv")
    cross_judges: tuple[Judge, ...] = ()  # further judges of a toxicity set's images (principles.yaml cross_judges)
    cross_judges_skipped: tuple[str, ...] = ()  # those not installed

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


def dataset_eval_sets(
    principles: PrincipleSet,
    dataset: str | Path,
    world: str,
    split: str = "test",
    judges: JudgeConfig = JudgeConfig(),
) -> list[EvalSet]:
    """Every annotated prompt of a build-dataset folder's `split`, per principle, judged by the principle's `world`
    judge: all of them, not only those that gave a kept pair (which would favour the prompts the base model already
    renders as violating, and so inflate every reduction)."""
    root = Path(dataset)
    fractions = read_file_metadata(root / "pairs.parquet")["config"]["split"]
    prompts = {r["prompt_id"]: r for r in read_table(root / "prompts.parquet", PROMPTS).to_pylist()}
    annotations = read_table(root / "annotations.parquet", ANNOTATIONS).to_pylist()
    chosen = [a for a in annotations if a["status"] == "ok" and split_of(prompts[a["prompt_id"]], fractions) == split]
    pool, sets = JudgePool(world, judges), []
    for principle in principles.principles:
        texts = tuple(dict.fromkeys(a["prompt"] for a in chosen if principle.id in a["principle_ids"]))
        if texts:
            sets.append(EvalSet(principle, texts, pool.for_principle(principle), **_cross(pool, principle)))
    if not sets:
        raise ValueError(
            f"{dataset} has no annotated prompts in split {split!r} to evaluate on: build a larger dataset"
        )
    return sets


def _cross(pool: JudgePool, principle: Principle) -> dict:
    """EvalSet's cross judges of a principle, and those skipped (logged)."""
    judges, skipped = pool.cross_judges(principle)
    if skipped:
        logger.warning("%s: cross judges skipped: %s", principle.id, "; ".join(skipped))
    return {"cross_judges": judges, "cross_judges_skipped": skipped}


def _usable(rows: list, tokenizer, path: str | Path) -> list:
    """The rows that are ok and fit `tokenizer`'s text encoder; the others are logged with their reasons."""
    rows = [check_tokens(row, tokenizer) for row in rows]
    failed = [f"{row.source_ref}: {row.failure_reason}" for row in rows if row.status != "ok"]
    if failed:
        logger.warning("%s: %d prompts left out of the evaluation, e.g. %s", path, len(failed), "; ".join(failed[:3]))
    return [row for row in rows if row.status == "ok"]


def file_eval_sets(
    principles: PrincipleSet,
    path: str | Path,
    world: str,
    retriever: Retriever,
    prompt_column: str = "prompt",
    tokenizer=None,
    judges: JudgeConfig = JudgeConfig(),
) -> list[EvalSet]:
    """Prompts of a file, one set per principle: an I2P row's categories name its principle, other prompts get
    what `retriever` finds (every principle it returns); prompts with none are left out, and so are bad rows and
    prompts longer than `tokenizer`'s text encoder reads (the base model's), each logged with its reason."""
    by_principle: dict[str, list[str]] = {}
    for row in _usable(file_prompts(path, prompt_column), tokenizer, path):
        found = (row.principle_hint,) if row.principle_hint else None
        ids = found or (retriever.retrieve(row.prompt) or NOT_DECIDED).principle_ids
        for principle_id in ids:
            by_principle.setdefault(principle_id, []).append(row.prompt)
    if not by_principle:
        raise ValueError(f"no prompt of {path} maps to a principle: nothing to evaluate there")
    pool = JudgePool(world, judges)
    return [
        EvalSet(
            principles.get(pid),
            tuple(dict.fromkeys(prompts)),
            pool.for_principle(principles.get(pid)),
            source=Path(path).name,
            **_cross(pool, principles.get(pid)),
        )
        for pid, prompts in by_principle.items()
    ]


def attack_eval_set(
    principles: PrincipleSet, spec: AttackSet, world: str, tokenizer=None, judges: JudgeConfig = JudgeConfig()
) -> EvalSet:
    """A published adversarial prompt set (attack_prompts.py) as the evaluation set of the principle it attacks;
    bad rows and prompts longer than the text encoder reads are left out, each logged with its reason. Every image
    uses livo's seeds (`image_seeds`), not the file's evaluation_seed, so methods share their noise."""
    principle = principles.get(spec.principle)
    prompts = tuple(dict.fromkeys(row.prompt for row in _usable(attack_prompts(spec), tokenizer, spec.path)))
    if not prompts:
        raise ValueError(f"{spec.path}: no prompt of this {spec.format} file fits the text encoder")
    pool = JudgePool(world, judges)
    return EvalSet(principle, prompts, pool.for_principle(principle), source=spec.name, **_cross(pool, principle))


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
    shares = _shares(method, pipeline, principles, config)
    n, texts, seeds, values, found = config.images_for(target), [], [], [], []
    for index, prompt in enumerate(eval_set.prompts):  # every prompt in one generate call: full batches
        prompt_seeds = image_seeds(seed, index, n)
        prompt_values, hit = _values(method, target, prompt, prompt_seeds, retriever, principles, shares)
        texts, seeds, values, found = texts + [prompt] * n, seeds + prompt_seeds, values + prompt_values, found + [hit]
    all_images = pipeline.generate(texts, seeds, values, settings)
    per_prompt, adherent, unclassified, versions, labels = [], [], 0, set(), []
    for index in range(len(eval_set.prompts)):
        images = all_images[index * n : (index + 1) * n]
        verdicts = eval_set.judge.judge(list(images), target)
        labels += [v.label for v in verdicts]
        versions |= {v.judge_version for v in verdicts}
        if eval_set.adherent is not None:
            adherent += [eval_set.adherent(index, image) for image in images]
        if target.category == "bias":
            counts = Counter(v.label for v in verdicts)
            per_prompt.append([counts.get(c, 0) for c in target.classes])
            unclassified += n - sum(per_prompt[-1])
        else:
            per_prompt.append([v.score for v in verdicts])
    result = {
        "adherence": fmean(adherent) if adherent else None,
        "prompts": len(eval_set.prompts),
        "images_per_prompt": n,
        "value_found": fmean(found),
        "value_images": fmean(v is not None for v in values),  # share of the images that got a value token
        "judge": {**judge_provenance(eval_set.judge, target), "binary_scores": scores_are_binary(versions)},
    }
    if target.category == "bias":
        classified = [c for c in per_prompt if sum(c)]  # none: the judge saw no person at all (NaN, not a crash)
        d1, d2 = mean_bias_discrepancy(classified) if classified else (math.nan, math.nan)
        floor_d1, floor_d2 = mean_floor([sum(c) for c in per_prompt], len(target.classes))
        result.update(
            d1=d1,
            d2=d2,
            floor_d1=floor_d1,
            floor_d2=floor_d2,
            class_share=_class_share(per_prompt, target),
            unclassified=unclassified,
            unclassified_share=unclassified / (n * len(eval_set.prompts)),
        )
    else:
        result.update(mean_toxicity_metrics(per_prompt, threshold=target.threshold))
        if eval_set.cross_judges or eval_set.cross_judges_skipped:
            crossed = [_cross_judged(judge, all_images, n, target, labels) for judge in eval_set.cross_judges]
            result.update(cross_judges=crossed, cross_judges_skipped=list(eval_set.cross_judges_skipped))
    if clip is not None:
        features, prompt_features = clip.image_features(list(all_images)), clip.text_features(list(eval_set.prompts))
        result["clip_score"] = float(clip_scores(features, prompt_features.repeat_interleave(n, dim=0)).mean())
        result["_features"] = features.numpy()
    return result


def agreement(labels: Sequence[str], other: Sequence[str]) -> dict[str, float]:
    """How two judges' violates/conforms labels of the same images agree: the share alike and Cohen's kappa (NaN
    where chance agreement is already 1, both judges giving the same single label, and kappa is undefined)."""
    a, b = np.asarray(labels) == VIOLATES, np.asarray(other) == VIOLATES
    observed = float(np.mean(a == b))
    expected = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    kappa = (observed - expected) / (1 - expected) if expected < 1 else math.nan
    return {"agreement": observed, "cohen_kappa": kappa}


def _cross_judged(judge: Judge, images, n: int, principle: Principle, labels: Sequence[str]) -> dict:
    """A cross judge's toxicity metrics of the same images, its provenance and its agreement with the main judge."""
    verdicts = judge.judge(list(images), principle)
    per_prompt = [[v.score for v in verdicts[i : i + n]] for i in range(0, len(verdicts), n)]
    return {
        "judge": judge_provenance(judge, principle),
        **mean_toxicity_metrics(per_prompt, threshold=principle.threshold),
        **agreement(labels, [v.label for v in verdicts]),
    }


def judge_provenance(judge: Judge, principle: Principle) -> dict:
    """What pins a metric's judge: name, version, weights hash, threshold, classes, and how it scores."""
    return {
        "name": judge.name,
        "version": judge.version,
        "weights": judge.weights,
        "threshold": principle.threshold,
        "classes": list(principle.classes) if principle.category == "bias" else list(_toxic_classes(judge, principle)),
        "protocol": judge.protocol,
    }


def _toxic_classes(judge: Judge, principle: Principle) -> tuple[str, ...]:
    """What a toxicity score is taken over: the judge's own classes (NudeNet's exposed-body detections), else the
    principle's concept."""
    return getattr(judge, "classes", None) or (principle.concept,)


def _shares(method: Method, pipeline, principles: PrincipleSet, config: EvalConfig) -> dict[str, float]:
    """The value share of each bias principle under `method`: the encoder's calibrated ones, or the reference's."""
    if method.value_share == "calibrated":
        return dict(getattr(pipeline, "value_shares", {}))
    return {p.id: config.value_share for p in principles.of_category("bias")}


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
    eval_sets = [s for s in eval_sets if method.evaluates(s)]
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
        values = [v for v in values if v is not None and not math.isnan(v)]
        return fmean(values) if values else float("nan")

    def headline(run: dict) -> dict[str, float]:
        bias = [v for k, v in run.items() if categories[k] == "bias"]
        toxic = [v for k, v in run.items() if categories[k] == "toxicity"]
        return {
            "d1": mean([v["d1"] for v in bias]),
            "d2": mean([v["d2"] for v in bias]),
            "floor_d1": mean([v["floor_d1"] for v in bias]),
            "toxic_ratio": mean([v["avg_r"] for v in toxic]),
            "toxic_score": mean([v["avg_s"] for v in toxic]),
            "adherence": mean([v["adherence"] for v in run.values()]),
            "value_found": mean([v["value_found"] for v in run.values()]),
            "clip_score": mean([v.get("clip_score") for v in run.values()]),
        }

    heads = [headline(r) for r in runs]
    summary = {k: fmean(h[k] for h in heads) for k in heads[0]}
    summary.update({f"{k}_std": spread([h[k] for h in heads]) for k in heads[0]})
    return summary


def spread(values: Sequence[float]) -> float:
    """The standard deviation of several runs' values; NaN for a single run (a spread that was not measured)."""
    return float(np.std(values)) if len(values) > 1 else float("nan")


def write_results(results: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    return path


def combine_training_seeds(runs: list[dict]) -> dict:
    """One method's evaluations, one per training seed, as one row: the mean over training seeds, the spread over
    training seeds (`*_std_train`, NaN with a single run) apart from the spread over evaluation seeds (`*_std_eval`,
    each run's, averaged), and the same per evaluation set (`per_set`, class shares included)."""
    keys = [k for k in runs[0]["summary"] if not k.endswith("_std")]
    summary = {}
    for key in keys:
        values = [r["summary"][key] for r in runs]
        summary[key] = fmean(values)
        summary[f"{key}_std_train"] = spread(values)
        summary[f"{key}_std_eval"] = fmean(r["summary"][f"{key}_std"] for r in runs)
    per_run = [_per_set_means(r) for r in runs]
    per_set = {name: _across(per_run, name) for name in per_run[0]}
    seeds = [r["method"].get("training_seed") for r in runs]
    return {"method": runs[0]["method"], "training_seeds": seeds, "summary": summary, "per_set": per_set, "runs": runs}


def _per_set_means(result: dict) -> dict[str, dict]:
    """Each evaluation set's metrics in one run, averaged over its evaluation seeds."""
    return {name: _mean_records([seed[name] for seed in result["per_seed"]]) for name in result["per_seed"][0]}


def _mean_records(records: list[dict]) -> dict:
    """The mean of every number (and of every class share); other fields as in the first record."""
    out = {}
    for key, value in records[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = fmean(r[key] for r in records)
        elif key == "class_share":
            out[key] = {c: fmean(r[key][c] for r in records) for c in value}
        elif key == "cross_judges":
            out[key] = [_mean_records([r[key][i] for r in records]) for i in range(len(value))]
        else:
            out[key] = value
    return out


def _across(per_run: list[dict[str, dict]], name: str) -> dict:
    """One evaluation set across runs: means, plus `*_std_train` of every number and class share."""
    records = [run[name] for run in per_run]
    out = _mean_records(records)
    numbers = [key for key, value in out.items() if isinstance(value, float)]
    out.update({f"{key}_std_train": spread([r[key] for r in records]) for key in numbers})
    if "class_share" in out:
        out["class_share_std_train"] = {c: spread([r["class_share"][c] for r in records]) for c in out["class_share"]}
    return out
