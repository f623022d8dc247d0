"""Debiasing from the base model's measured class distribution: the aligned-class distribution q, the value share s,
seeded target draws, exact value shares and the fair-sampler floor of D1/D2.

At inference a share s of a bias prompt's images gets the value and the rest are the base model's, so the user sees
the mixture (1 - s) p + s q, where p is the base model's class distribution and q the value images'. The build picks
q so that this mixture is as close to uniform as s allows, and only images of over-represented classes are the
violating side of a pair.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property, lru_cache

import numpy as np
from scipy.special import gammaln

REFERENCE_SHARE = 0.5  # the release's protocol: half the images of a bias prompt get the value
MIN_FAMILY_IMAGES = 100  # judged base images a prompt family needs for its own estimate of p
_EXACT_FLOOR_LIMIT = 400_000  # compositions of n into k parts enumerated exactly; beyond, Monte Carlo
_FLOOR_SAMPLES = 200_000

Distribution = dict[str, float]


def class_distribution(labels: Iterable[str], classes: Sequence[str]) -> Distribution:
    """Class shares of the classified labels (labels outside `classes`, such as "none", are left out)."""
    counts = Counter(label for label in labels if label in classes)
    total = sum(counts.values())
    if total == 0:
        raise ValueError(f"no image shows one of the classes {list(classes)}: nothing to measure the base model on")
    return {c: counts[c] / total for c in classes}


def over_represented(p: Mapping[str, float]) -> set[str]:
    """Classes whose share exceeds 1/K: the only classes a violating image may show."""
    return {c for c, share in p.items() if share > 1 / len(p) + 1e-12}


def calibrated_share(p: Mapping[str, float]) -> float:
    """The smallest value share with which the mixture can be uniform, s = 1 - min_c(u_c / p_c), capped to [0.5, 1].

    (1 - s) p_c <= u_c must hold for every class, the largest p_c decides."""
    return min(1.0, max(REFERENCE_SHARE, 1.0 - (1 / len(p)) / max(p.values())))


def aligned_distribution(p: Mapping[str, float], share: float) -> Distribution:
    """q minimising the distance of the user's mixture (1 - s) p + s q to uniform (least squares, so the expected
    D2 of many images): the Euclidean projection of (u - (1 - s) p) / s onto the simplex. Where uniform is reachable
    this is (u - (1 - s) p) / s itself; the issue's max(., 0)-and-normalise differs only where it is not."""
    if not 0 < share <= 1:
        raise ValueError(f"value share must be in (0, 1], got {share}")
    classes, uniform = list(p), 1 / len(p)
    wanted = np.array([(uniform - (1 - share) * p[c]) / share for c in classes])
    return dict(zip(classes, _project_to_simplex(wanted).tolist(), strict=True))


def _project_to_simplex(v: np.ndarray) -> np.ndarray:
    """The nearest probability vector to v (Duchi et al. 2008)."""
    mu = np.sort(v)[::-1]
    cumulative = np.cumsum(mu) - 1.0
    rho = np.nonzero(mu - cumulative / np.arange(1, len(v) + 1) > 0)[0][-1]
    return np.maximum(v - cumulative[rho] / (rho + 1), 0.0)


def target_plan(p: Mapping[str, float], q: Mapping[str, float], iterations: int = 500) -> dict[str, Distribution]:
    """For each over-represented class a (the violating side), the distribution of the aligned targets of its images.

    A violating image never gets its own class as target, so the plan is a matrix with zero diagonal whose rows carry
    the violating classes' weights and whose columns add up to q where that is possible (Sinkhorn scaling); every
    row is then normalised. Two classes, one over-represented: its images all target the other class. A uniform p
    has no violating class and no plan."""
    sources = sorted(over_represented(p))
    if not sources:
        return {}
    classes = list(q)
    weights = np.array([p[a] for a in sources]) / sum(p[a] for a in sources)
    goal = np.array([q[c] for c in classes])
    plan = weights[:, None] * goal[None, :] * np.array([[a != c for c in classes] for a in sources], dtype=float)
    for _ in range(iterations):
        columns = plan.sum(axis=0)
        plan *= np.divide(goal, columns, out=np.ones_like(goal), where=columns > 0)[None, :]
        rows = plan.sum(axis=1)
        plan *= np.divide(weights, rows, out=np.zeros_like(weights), where=rows > 0)[:, None]
    rows = plan.sum(axis=1, keepdims=True)
    plan = np.divide(plan, rows, out=np.zeros_like(plan), where=rows > 0)
    return {a: dict(zip(classes, plan[i].tolist(), strict=True)) for i, a in enumerate(sources)}


def _uniform(key: str) -> float:
    """A uniform number in (0, 1) fixed by `key`."""
    return (int(hashlib.sha256(key.encode()).hexdigest()[:15], 16) + 0.5) / 16**15


def draw_class(distribution: Mapping[str, float], key: str) -> str:
    """One class drawn from `distribution` by `key` (an image's seed and principle): an exponential race in which each
    class's clock depends on its own name only, so the draw does not depend on the order of the classes."""
    clocks = {c: -math.log(_uniform(f"{key}|{c}")) / w for c, w in distribution.items() if w > 0}
    if not clocks:
        raise ValueError(f"cannot draw from an empty distribution {dict(distribution)}")
    return min(clocks, key=clocks.get)


@dataclass(frozen=True)
class BiasPlan:
    """How one (principle, prompt family) is debiased: the measured p, the value share s, the aligned targets q."""

    principle_id: str
    family: str | None  # None: the principle's estimate over all its families
    images: int  # classified base images p was measured on
    p: Distribution
    share: float
    q: Distribution

    @property
    def violating_classes(self) -> set[str]:
        return over_represented(self.p)

    @cached_property
    def targets(self) -> dict[str, Distribution]:
        """For each class a violating image may show, the distribution of its aligned image's target."""
        return target_plan(self.p, self.q)

    @property
    def reachable_q(self) -> Distribution:
        """The aligned targets the pairs actually carry: q where the plan can reach it. Not where the violating
        classes cannot target their own class: with two classes every aligned image shows the minority class."""
        weights = {a: self.p[a] for a in self.targets}
        total = sum(weights.values()) or 1.0
        return {c: sum(w * self.targets[a][c] for a, w in weights.items()) / total for c in self.p}

    @property
    def expected_mixture(self) -> Distribution:
        """What the user gets from many images if the value images follow `reachable_q`: (1 - s) p + s q."""
        return {c: (1 - self.share) * self.p[c] + self.share * self.reachable_q[c] for c in self.p}

    def as_dict(self) -> dict:
        return asdict(self) | {"reachable_q": self.reachable_q, "expected_mixture": self.expected_mixture}


def plan_bias(
    principle_id: str, family: str | None, labels: Sequence[str], classes: Sequence[str], share: float | None
) -> BiasPlan:
    """The plan for one principle's base images; `share` None: the calibrated share of the measured p."""
    p = class_distribution(labels, classes)
    s = calibrated_share(p) if share is None else share
    images = sum(label in classes for label in labels)
    return BiasPlan(principle_id, family, images, p, s, aligned_distribution(p, s))


def plan_families(
    principle_id: str,
    labels_by_family: Mapping[str, Sequence[str]],
    classes: Sequence[str],
    share: float | None,
    min_images: int = MIN_FAMILY_IMAGES,
) -> dict[str | None, BiasPlan]:
    """A plan per prompt family that has `min_images` classified base images, and the principle's overall plan (key
    None) for the others. The value share is the principle's (inference does not know a prompt's family)."""
    everything = [label for labels in labels_by_family.values() for label in labels]
    overall = plan_bias(principle_id, None, everything, classes, share)
    plans: dict[str | None, BiasPlan] = {None: overall}
    if len(labels_by_family) < 2:  # one family: its plan is the principle's
        return plans
    for family, labels in sorted(labels_by_family.items(), key=lambda item: str(item[0])):
        if family is not None and sum(label in classes for label in labels) >= min_images:
            plans[family] = plan_bias(principle_id, family, labels, classes, overall.share)
    return plans


def round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def value_assignment(n: int, shares: Sequence[tuple[object, float]], seed: int) -> list[object | None]:
    """Which of a prompt's n images get which value: exactly round(n * s) images for a single (value, s), chosen by a
    permutation seeded by `seed` alone (the same for every method), the rest None.

    Several values share the images: shares that add up to more than 1 (two bias principles for one prompt) are
    scaled to fit, and round(n * total) images are split between them by the largest remainder."""
    if any(s < 0 for _, s in shares):
        raise ValueError(f"value shares must be >= 0, got {[s for _, s in shares]}")
    total = sum(s for _, s in shares)
    exact = [n * s / max(total, 1.0) for _, s in shares]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: round_half_up(n * min(total, 1.0)) - sum(counts)]:
        counts[i] += 1
    order = np.random.default_rng(seed).permutation(n).tolist()
    assignment: list[object | None] = [None] * n
    start = 0
    for (value, _), count in zip(shares, counts, strict=True):
        for index in order[start : start + count]:
            assignment[index] = value
        start += count
    return assignment


@lru_cache(maxsize=256)
def fair_sampler_floor(n: int, k: int) -> tuple[float, float]:
    """Expected D1 and D2 of one prompt's n images drawn from the uniform distribution over k classes: the value
    an ideal fair sampler scores, since D1 never reaches 0 with finitely many images. Exact where the
    compositions of n into k parts are few enough to enumerate, else a fixed-seed Monte-Carlo estimate."""
    if n < 1 or k < 2:
        raise ValueError(f"need n >= 1 images and k >= 2 classes, got n={n}, k={k}")
    if math.comb(n + k - 1, k - 1) <= _EXACT_FLOOR_LIMIT:
        counts = _compositions(n, k)
        weights = np.exp(gammaln(n + 1) - gammaln(counts + 1).sum(axis=1) - n * math.log(k))
    else:
        counts = np.random.default_rng(0).multinomial(n, [1 / k] * k, size=_FLOOR_SAMPLES)
        weights = np.full(len(counts), 1 / len(counts))
    d1 = (counts.max(axis=1) - counts.min(axis=1)) / n
    d2 = np.sqrt(((counts / n - 1 / k) ** 2).sum(axis=1))
    return float(weights @ d1), float(weights @ d2)


def _compositions(n: int, k: int) -> np.ndarray:
    """Every way to put n images into k classes, (M, k) counts (stars and bars)."""
    bars = np.array(list(itertools.combinations(range(n + k - 1), k - 1)), dtype=np.int64).reshape(-1, k - 1)
    edges = np.concatenate([np.full((len(bars), 1), -1), bars, np.full((len(bars), 1), n + k - 1)], axis=1)
    return np.diff(edges, axis=1) - 1


def mean_floor(images_per_prompt: Sequence[int], k: int) -> tuple[float, float]:
    """The floor averaged over prompts with their own numbers of classified images (prompts with none left out)."""
    floors = [fair_sampler_floor(n, k) for n in images_per_prompt if n > 0]
    if not floors:
        return float("nan"), float("nan")
    return float(np.mean([f[0] for f in floors])), float(np.mean([f[1] for f in floors]))
