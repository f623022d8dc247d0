"""Judges: one interface that turns images into verdicts for a principle; `JUDGES` maps names to classes.

The names are those of `judges:` in principles.yaml. Model-backed judges load their models on first use.
"""

from livo_core.judges.base import Judge, Verdict
from livo_core.judges.clip import CLIPAttributeJudge
from livo_core.judges.gender import FaceGenderJudge
from livo_core.judges.nsfw import NSFWJudge, NudeNetJudge
from livo_core.judges.shapes import ShapesJudge
from livo_core.judges.vlm import VLMJudge

JUDGES: dict[str, type] = {
    "shapes": ShapesJudge,
    "nsfw": NSFWJudge,
    "nudenet": NudeNetJudge,
    "face_gender": FaceGenderJudge,
    "clip": CLIPAttributeJudge,
    "vlm": VLMJudge,
}

__all__ = [
    "JUDGES",
    "CLIPAttributeJudge",
    "FaceGenderJudge",
    "Judge",
    "NSFWJudge",
    "NudeNetJudge",
    "ShapesJudge",
    "VLMJudge",
    "Verdict",
]
