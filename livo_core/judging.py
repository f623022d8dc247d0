"""The judge stage: every generated image scored by its principle's judge, with provenance, failures recorded."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from livo_core.config import JudgeConfig
from livo_core.judges import JUDGES, Judge
from livo_core.principles import PrincipleSet
from livo_core.storage import content_id


class JudgePool:
    """One instance per judge name, created on first use (judges load models lazily); `judges` sets their models."""

    def __init__(self, world: str, judges: JudgeConfig = JudgeConfig()):
        self.world, self._options, self._judges = world, judges.options(), {}

    def for_principle(self, principle) -> Judge:
        name = principle.judges.get(self.world)
        if name is None:
            raise ValueError(f"principle {principle.id!r} has no judge for world {self.world!r} in principles.yaml")
        if name not in self._judges:
            self._judges[name] = JUDGES[name](**self._options.get(name, {}))
        return self._judges[name]

    def cross_judges(self, principle) -> tuple[tuple[Judge, ...], tuple[str, ...]]:
        """The principle's cross judges in this world whose package is installed, and the names of those skipped
        (with the install that brings them)."""
        judges, skipped = [], []
        for name in principle.cross_judges.get(self.world, ()):
            package = getattr(JUDGES[name], "package", None)
            if package and importlib.util.find_spec(package) is None:
                skipped.append(f"{name} (its package {package} is not installed)")
                continue
            if name not in self._judges:
                self._judges[name] = JUDGES[name](**self._options.get(name, {}))
            judges.append(self._judges[name])
        return tuple(judges), tuple(skipped)

    def key(self, principles: PrincipleSet) -> str:
        """What decides a judgment: the world and, per principle it judges, the judge's name, version, weights and
        threshold (judgments made otherwise are not reused)."""
        parts = [self.world] + [
            f"{p.id}:{judge.name}:{judge.version}:{judge.weights}:{p.threshold}"
            for p in principles.principles
            if self.world in p.judges
            for judge in [self.for_principle(p)]
        ]
        return content_id("|".join(parts))


def load_image(path: Path) -> np.ndarray:
    """An (H, W, 3) uint8 array; a clear error for a file that is not an image."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path} is not a readable image ({error})") from error


def judge_images(rows: Sequence[dict], principles: PrincipleSet, pool: JudgePool, root: Path) -> list[dict]:
    """JUDGMENTS rows for IMAGES rows; unreadable images become failed rows with the reason."""
    judged = []
    for row in rows:
        principle = principles.get(row["principle_id"])
        judge = pool.for_principle(principle)
        base = {
            "request_id": row["request_id"],
            "image_sha256": row["image_sha256"],
            "principle_id": principle.id,
            "judge_name": judge.name,
            "judge_version": judge.version,
            "threshold": principle.threshold,
        }
        try:
            verdict = judge.judge([load_image(root / row["image_path"])], principle)[0]
        except ValueError as error:
            judged.append({**base, "label": None, "score": None, "status": "failed", "failure_reason": str(error)})
            continue
        judged.append(
            {
                **base,
                "judge_version": verdict.judge_version,
                "label": verdict.label,
                "score": verdict.score,
                "status": "ok",
                "failure_reason": None,
            }
        )
    return judged
