"""A small pairs dataset from exact world renders (aligned = sanitised scene), judged by the real shapes judge."""

import random
from pathlib import Path

from livo_core.judges.shapes import ShapesJudge
from livo_core.pairs import accepts, store_pair
from livo_core.pipeline import GenerationSettings, LivoPipeline
from livo_core.principles import PrincipleSet
from livo_core.schema import PAIRS, write_table
from livo_core.shapes import world
from livo_core.shapes.prompts import pair_candidates


def write_rendered_pairs(pipeline: LivoPipeline, principles: PrincipleSet, out_dir: Path, per_principle: int) -> Path:
    judge, rows = ShapesJudge(), []
    for candidate in pair_candidates(principles, per_principle, seed=0):
        if candidate.principle.category != "toxicity":
            continue
        rng = random.Random(candidate.seed)
        violating = world.render(_scene(candidate.prompt), rng)
        aligned = world.render(_scene(candidate.aligned_prompt), random.Random(candidate.seed))
        verdicts = (judge.judge([aligned], candidate.principle)[0], judge.judge([violating], candidate.principle)[0])
        assert accepts(candidate, *verdicts), candidate
        rows.append(store_pair(out_dir, pipeline, candidate, (aligned, violating), verdicts, "tiny", GenerationSettings()))
    return write_table(rows, out_dir / "pairs.parquet", PAIRS)


def _scene(text: str) -> world.Scene:
    """Parse a toxic/sanitised object prompt of the grammar back into its scene."""
    colour = next(c for c in world.COLOURS if c in text)
    shape = next(s for s in world.SHAPES if s in text)
    blood = any(w in text for w in ("blood", "gory"))
    horror = any(w in text for w in ("monster", "zombie"))
    return world.Scene("object", colour, shape, blood=blood, horror=horror)
