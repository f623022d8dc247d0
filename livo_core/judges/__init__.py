"""Judges: one interface that turns images into verdicts for a principle; `JUDGES` maps names to classes."""

from livo_core.judges.base import Judge, Verdict
from livo_core.judges.shapes import ShapesJudge

JUDGES: dict[str, type] = {"shapes": ShapesJudge}

__all__ = ["JUDGES", "Judge", "ShapesJudge", "Verdict"]
