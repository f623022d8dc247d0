"""Shapes-world prompt sets: preference-pair candidates and held-out evaluation prompts per principle."""

from __future__ import annotations

import random

from livo_core.pairs import PairCandidate
from livo_core.principles import Principle, PrincipleSet, load_principles
from livo_core.shapes import world

TRAIN_OCCUPATIONS, HELDOUT_OCCUPATIONS = world.OCCUPATIONS[:30], world.OCCUPATIONS[30:]
TRAIN_TEMPLATES, HELDOUT_TEMPLATES = (0, 1), (2, 3)  # phrasings of toxic prompts
PRIORS = {"gender": world.GENDER_PRIOR, "race": world.RACE_PRIOR}
WORLD_VERSION = "1"  # bump when the grammar or renderer changes


def world_principles(principles: PrincipleSet) -> list[Principle]:
    """The principles the shapes world renders (those with a `shapes` judge)."""
    return [p for p in principles.principles if "shapes" in p.judges]


def majority_class(principle: Principle) -> str:
    prior = PRIORS[principle.attribute]
    return max(prior, key=prior.get)


def toxic_prompt(principle: Principle, colour: str, shape: str, template: int) -> world.WorldPrompt:
    concept = principle.concept
    if concept not in ("blood", "horror"):
        raise ValueError(f"the shapes world has no concept {concept!r} ({principle.id})")
    return world.object_prompt(colour, shape, blood=concept == "blood", horror=concept == "horror", template=template)


def pair_candidates(principles: PrincipleSet, per_principle: int, seed: int = 0) -> list[PairCandidate]:
    """Training candidates: toxic prompt vs its sanitised rewrite; occupation prompt vs a named minority class."""
    rng = random.Random(seed)
    candidates = []
    for principle in world_principles(principles):
        for _ in range(per_principle):
            image_seed = rng.randrange(2**31)
            if principle.category == "toxicity":
                prompt = toxic_prompt(
                    principle, rng.choice(list(world.COLOURS)), rng.choice(world.SHAPES), rng.choice(TRAIN_TEMPLATES)
                )
                candidates.append(PairCandidate(prompt.text, principle, world.sanitised(prompt).text, image_seed))
                continue
            occupation, template = rng.choice(TRAIN_OCCUPATIONS), rng.randrange(len(world.PERSON_TEMPLATES))
            target = rng.choice([c for c in principle.classes if c != majority_class(principle)])
            explicit = {principle.attribute: target}
            candidates.append(
                PairCandidate(
                    world.person_prompt(occupation, template=template).text,
                    principle,
                    world.person_prompt(occupation, template=template, **explicit).text,
                    image_seed,
                    target_class=target,
                )
            )
    return candidates


def eval_prompts(principle: Principle, split: str = "heldout") -> list[world.WorldPrompt]:
    """Evaluation prompts of one principle: held-out occupations or toxic phrasings (or the training ones)."""
    if principle.category == "bias":
        occupations = HELDOUT_OCCUPATIONS if split == "heldout" else TRAIN_OCCUPATIONS
        return [world.person_prompt(o) for o in occupations]
    templates = HELDOUT_TEMPLATES if split == "heldout" else TRAIN_TEMPLATES
    return [toxic_prompt(principle, c, s, t) for t in templates for c in world.COLOURS for s in world.SHAPES]


def shapes_prompts() -> list:
    """The world's training-side prompts as PROMPTS rows (source "shapes"): toxic, occupation and neutral prompts.

    Held-out occupations and phrasings (`eval_prompts(..., "heldout")`) never enter a dataset: they are the
    evaluation's.
    """
    from livo_core.prompts import PromptRow  # noqa: PLC0415 (prompts imports this module lazily)

    def row(prompt: world.WorldPrompt, ref: str, category: str | None, hint: str | None) -> PromptRow:
        return PromptRow(prompt.text, "shapes", ref, WORLD_VERSION, category_hint=category, principle_hint=hint)

    principles = load_principles()
    rows = []
    for principle in world_principles(principles):
        if principle.category == "toxicity":
            toxic = eval_prompts(principle, "train")
            rows += [row(p, f"{principle.concept}:{i}", "toxicity", principle.id) for i, p in enumerate(toxic)]
    templates = range(len(world.PERSON_TEMPLATES))
    persons = [world.person_prompt(o, template=t) for o in TRAIN_OCCUPATIONS for t in templates]
    rows += [row(p, f"person:{i}", "bias", None) for i, p in enumerate(persons)]
    rows += [row(world.object_prompt(c, s), f"object:{c}-{s}", None, None) for c in world.COLOURS for s in world.SHAPES]
    return rows
