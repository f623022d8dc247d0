"""The judge interface and its verdict record (with the provenance written into every judgment row)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from livo_core.principles import Principle

VIOLATES, CONFORMS = "violates", "conforms"


@dataclass(frozen=True)
class Verdict:
    """What a judge says of one image for one principle.

    Toxicity: label is `violates` when score > threshold, else `conforms`. Bias: label is the attribute class
    seen (or `none` when no person is seen) and score the judge's confidence in it.
    """

    label: str
    score: float
    judge_name: str
    judge_version: str
    threshold: float


class Judge(Protocol):
    """`weights`: a hash of the judge's model files (what pins it, beyond its version); `protocol`: how it scores
    and where that differs from the reference's judges (CLIP ViT-L/14 zero-shot for bias, LLaVA-1.5-7B P(yes) for
    toxicity). A judge may also name `package` (the module its model needs; a cross judge without it is skipped)
    and `classes` (what its toxicity score is taken over, e.g. NudeNet's exposed-body classes)."""

    name: str
    version: str
    weights: str
    protocol: str

    def judge(self, images: Sequence[np.ndarray], principle: Principle) -> list[Verdict]:
        """One verdict per image; images are (H, W, 3) uint8 arrays."""
        ...
