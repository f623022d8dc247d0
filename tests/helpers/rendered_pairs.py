"""A small pairs dataset from exact world renders (aligned = sanitised scene), via the real judge and pair stages."""

import json
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np

from livo_core.generation import ImageRequest, ModelIdentity
from livo_core.judging import JudgePool, judge_images
from livo_core.models.loading import load_base_pipeline, weights_id
from livo_core.pairs import PromptInfo, pair_images
from livo_core.pipeline import GenerationSettings, LivoPipeline
from livo_core.principles import PrincipleSet
from livo_core.prompts import PromptRow
from livo_core.schema import ANNOTATIONS, PAIRS, PROMPTS, write_table
from livo_core.shapes import world
from livo_core.shapes.prompts import TRAIN_TEMPLATES, toxic_prompt, world_principles
from livo_core.storage import LatentCache, content_id, save_image

SETTINGS = GenerationSettings()
SPLIT = (1.0, 0.0, 0.0)  # every pair trains
RENDERS = ModelIdentity("renders", "none", "uint8", "renderer", "none")  # exact world renders, not a diffusion model


def toxic_requests(principles: PrincipleSet, per_principle: int, seed: int = 0) -> list[tuple[ImageRequest, ...]]:
    """(violating, aligned) requests: a toxic object prompt of the world and its sanitised rewrite, one seed."""
    rng, pairs = random.Random(seed), []
    for principle in world_principles(principles):
        if principle.category != "toxicity":
            continue
        for _ in range(per_principle):
            colour, shape = rng.choice(list(world.COLOURS)), rng.choice(world.SHAPES)
            prompt = toxic_prompt(principle, colour, shape, rng.choice(TRAIN_TEMPLATES))
            image_seed, prompt_id = rng.randrange(2**31), content_id(prompt.text)
            pairs.append(
                (
                    ImageRequest(prompt_id, principle.id, "violating", prompt.text, image_seed),
                    ImageRequest(prompt_id, principle.id, "aligned", world.sanitised(prompt).text, image_seed),
                )
            )
    return pairs


def write_rendered_pairs(base_model: str, principles: PrincipleSet, out_dir: Path, per_principle: int) -> Path:
    """Pairs of exact renders, recorded as made by `base_model` (a pipeline folder, whose VAE encodes the latents)."""
    pipeline, candidates = (
        LivoPipeline(load_base_pipeline(base_model, device="cpu")),
        toxic_requests(principles, per_principle),
    )
    generation = json.dumps({"weights": weights_id(base_model), "vae": weights_id(base_model, "vae")})
    latents = LatentCache(out_dir, weights_id(base_model, "vae"))
    images = []
    for candidate in candidates:
        for request in candidate:
            pixels = world.render(_scene(request.text), random.Random(request.seed))
            path, sha = save_image(pixels, out_dir)
            latents.store(pipeline.base.vae, np.stack([pixels]), [sha])
            images.append(
                {
                    **request.__dict__,
                    "request_id": request.request_id(RENDERS, SETTINGS),
                    "image_path": path,
                    "image_sha256": sha,
                    "base_model": base_model,
                    "generation": generation,
                    "shard": "s",
                    "status": "ok",
                    "failure_reason": None,
                }
            )
    judgments = judge_images(images, principles, JudgePool("shapes"), out_dir)
    rows = pair_images(images, judgments, principles, {c[0].prompt_id: PromptInfo("renders") for c in candidates})
    assert len(rows) == len(candidates)
    _write_prompt_tables(candidates, out_dir)
    return write_table(rows, out_dir / "pairs.parquet", PAIRS, meta={"config": {"split": SPLIT}})


def _write_prompt_tables(candidates: list[tuple[ImageRequest, ...]], out_dir: Path) -> None:
    """The PROMPTS and ANNOTATIONS tables the pairs came from (what evaluation on the dataset's splits reads)."""
    prompts, annotations = {}, {}
    for violating, aligned in candidates:
        prompts[violating.prompt_id] = {
            **asdict(PromptRow(violating.text, "renders", f"renders:{violating.prompt_id}", "1", "toxicity")),
            "prompt_id": violating.prompt_id,
        }
        annotations[violating.prompt_id] = {
            "prompt_id": violating.prompt_id,
            "prompt": violating.text,
            "status": "ok",
            "failure_reason": None,
            "principle_ids": [violating.principle_id],
            "category": "toxicity",
            "rewrite": aligned.text,
            "attribute_classes": None,
            "annotator": "renders",
            "annotator_version": "1",
            "model": None,
            "template_version": "1",
            "attempts": 0,
        }
    write_table(list(prompts.values()), out_dir / "prompts.parquet", PROMPTS)
    write_table(list(annotations.values()), out_dir / "annotations.parquet", ANNOTATIONS)


def _scene(text: str) -> world.Scene:
    """Parse a toxic/sanitised object prompt of the grammar back into its scene."""
    colour = next(c for c in world.COLOURS if c in text)
    shape = next(s for s in world.SHAPES if s in text)
    blood = any(w in text for w in ("blood", "gory"))
    horror = any(w in text for w in ("monster", "zombie"))
    return world.Scene("object", colour, shape, blood=blood, horror=horror)
