"""A small pairs dataset from exact world renders (aligned = sanitised scene), via the real judge and pair stages."""

import json
import random
from pathlib import Path

import numpy as np

from livo_core.judging import JudgePool, judge_images
from livo_core.pairs import PromptInfo, pair_images
from livo_core.pipeline import GenerationSettings, LivoPipeline
from livo_core.principles import PrincipleSet
from livo_core.schema import PAIRS, write_table
from livo_core.shapes import world
from livo_core.shapes.prompts import pair_candidates
from livo_core.storage import cache_latents, save_image

SETTINGS = GenerationSettings()


def write_rendered_pairs(pipeline: LivoPipeline, principles: PrincipleSet, out_dir: Path, per_principle: int) -> Path:
    candidates = [c for c in pair_candidates(principles, per_principle) if c.principle.category == "toxicity"]
    images = []
    for candidate in candidates:
        for request in candidate.requests():
            pixels = world.render(_scene(request.text), random.Random(request.seed))
            path, sha = save_image(pixels, out_dir)
            cache_latents(pipeline.base.vae, np.stack([pixels]), [sha], out_dir)
            images.append(
                {
                    **request.__dict__,
                    "request_id": request.request_id("tiny", SETTINGS),
                    "image_path": path,
                    "image_sha256": sha,
                    "base_model": "tiny",
                    "generation": json.dumps({}),
                    "shard": "s",
                    "status": "ok",
                    "failure_reason": None,
                }
            )
    judgments = judge_images(images, principles, JudgePool("shapes"), out_dir)
    rows = pair_images(images, judgments, principles, {c.prompt_id: PromptInfo("renders") for c in candidates})
    assert len(rows) == len(candidates)
    return write_table(rows, out_dir / "pairs.parquet", PAIRS)


def _scene(text: str) -> world.Scene:
    """Parse a toxic/sanitised object prompt of the grammar back into its scene."""
    colour = next(c for c in world.COLOURS if c in text)
    shape = next(s for s in world.SHAPES if s in text)
    blood = any(w in text for w in ("blood", "gory"))
    horror = any(w in text for w in ("monster", "zombie"))
    return world.Scene("object", colour, shape, blood=blood, horror=horror)
