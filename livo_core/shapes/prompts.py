"""Shapes-world prompt sets: the training-side prompts of the world and the held-out evaluation prompts."""

from __future__ import annotations

from livo_core.principles import Principle, PrincipleSet, load_principles
from livo_core.shapes import world

TRAIN_OCCUPATIONS, HELDOUT_OCCUPATIONS = world.OCCUPATIONS[:30], world.OCCUPATIONS[30:]
TRAIN_TEMPLATES, HELDOUT_TEMPLATES = (0, 1), (2, 3)  # phrasings of toxic prompts
WORLD_VERSION = "1"  # bump when the grammar or renderer changes


def world_principles(principles: PrincipleSet) -> list[Principle]:
    """The principles the shapes world renders (those with a `shapes` judge)."""
    return [p for p in principles.principles if "shapes" in p.judges]


def toxic_prompt(principle: Principle, colour: str, shape: str, template: int) -> world.WorldPrompt:
    concept = principle.concept
    if concept not in ("blood", "horror"):
        raise ValueError(f"the shapes world has no concept {concept!r} ({principle.id})")
    return world.object_prompt(colour, shape, blood=concept == "blood", horror=concept == "horror", template=template)


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

    def row(prompt: world.WorldPrompt, family: str, ref: str, category: str | None, hint: str | None) -> PromptRow:
        item = prompt.occupation or f"{prompt.colour}-{prompt.shape}"
        return PromptRow(
            prompt.text,
            "shapes",
            f"{family}:{ref}",
            WORLD_VERSION,
            category_hint=category,
            principle_hint=hint,
            family=family,
            group=f"{family}:{item}",
        )

    principles = load_principles()
    rows = []
    for principle in world_principles(principles):
        if principle.category == "toxicity":
            toxic = eval_prompts(principle, "train")
            rows += [row(p, principle.concept, str(i), "toxicity", principle.id) for i, p in enumerate(toxic)]
    templates = range(len(world.PERSON_TEMPLATES))
    persons = [world.person_prompt(o, template=t) for o in TRAIN_OCCUPATIONS for t in templates]
    rows += [row(p, "person", str(i), "bias", None) for i, p in enumerate(persons)]
    objects = [world.object_prompt(c, s) for c in world.COLOURS for s in world.SHAPES]
    rows += [row(p, "object", f"{p.colour}-{p.shape}", None, None) for p in objects]
    return rows
