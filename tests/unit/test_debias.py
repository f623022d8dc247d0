"""Debias plans: q from the measured p, the calibrated share, seeded target draws, exact value shares, the floor."""

import math
from collections import Counter

import numpy as np
import pytest

from livo_core.debias import (
    aligned_distribution,
    calibrated_share,
    draw_class,
    fair_sampler_floor,
    over_represented,
    plan_bias,
    target_plan,
    value_assignment,
)

RACE = ("white", "black", "indian", "asian", "latino")
SKEW_60 = dict(zip(RACE, (0.6, 0.1, 0.1, 0.1, 0.1), strict=True))
SHIPPED = {"white": 0.24, "black": 0.044, "indian": 0.134, "asian": 0.0, "latino": 0.582}  # the old shapes model


def _labels(p: dict, n: int) -> list[str]:
    return [c for c, share in p.items() for _ in range(round(share * n))]


def _mixture(p: dict, q: dict, share: float) -> dict:
    return {c: (1 - share) * p[c] + share * q[c] for c in p}


def test_q_makes_the_mixture_uniform_where_the_share_allows():
    q = aligned_distribution(SKEW_60, 0.5)
    assert q == pytest.approx({"white": 0.0, "black": 0.25, "indian": 0.25, "asian": 0.25, "latino": 0.25})
    share = calibrated_share(SKEW_60)
    assert share == pytest.approx(2 / 3)  # 1 - 0.2 / 0.6
    assert _mixture(SKEW_60, aligned_distribution(SKEW_60, share), share) == pytest.approx(dict.fromkeys(RACE, 0.2))


def test_q_is_the_least_squares_mixture_where_uniform_is_out_of_reach():
    q = aligned_distribution(SHIPPED, 0.5)
    assert sum(q.values()) == pytest.approx(1.0) and min(q.values()) >= 0
    best = np.linalg.norm(np.array(list(_mixture(SHIPPED, q, 0.5).values())) - 0.2)
    rng = np.random.default_rng(0)
    for candidate in rng.dirichlet(np.ones(5), size=2000):  # no other distribution gets closer to uniform
        other = dict(zip(SHIPPED, candidate, strict=True))
        assert np.linalg.norm(np.array(list(_mixture(SHIPPED, other, 0.5).values())) - 0.2) >= best - 1e-9
    assert q["latino"] == 0.0 and q["asian"] == max(q.values())


def test_calibrated_share_is_capped_to_the_reference_and_one():
    assert calibrated_share({"male": 0.9, "female": 0.1}) == 0.5  # 1 - 0.5/0.9 = 0.44, below the reference
    assert calibrated_share({"male": 0.5, "female": 0.5}) == 0.5
    assert calibrated_share({"a": 1.0, "b": 0.0, "c": 0.0, "d": 0.0}) == pytest.approx(0.75)


def _draw_targets(p: dict, n: int, classes_order: tuple[str, ...]) -> Counter:
    """Targets of n violating images drawn from p, each by its own seed, with the classes in the given order."""
    plan = plan_bias("racial_equality", None, [c for c in p for _ in range(round(1000 * p[c]))], classes_order, None)
    shown_rng = np.random.default_rng(1)
    sources = sorted(plan.violating_classes)
    weights = np.array([p[a] for a in sources]) / sum(p[a] for a in sources)
    targets = Counter()
    for seed in range(n):
        shown = sources[shown_rng.choice(len(sources), p=weights)]
        targets[draw_class({c: plan.targets[shown][c] for c in classes_order}, f"racial_equality|p|{seed}")] += 1
    return targets, plan


@pytest.mark.parametrize("p", [SKEW_60, SHIPPED], ids=["60-10-10-10-10", "shipped-skew"])
def test_targets_follow_q_never_exceed_it_and_ignore_class_order(p):
    n = 4000
    targets, plan = _draw_targets(p, n, RACE)
    for c in RACE:  # within 4 binomial standard deviations of q (and above q by no more)
        sigma = math.sqrt(n * plan.q[c] * (1 - plan.q[c]))
        assert abs(targets[c] - n * plan.q[c]) <= 4 * sigma + 1, (c, targets, plan.q)
    assert targets[max(p, key=p.get)] == 0  # the majority class is never a target
    assert len([c for c in RACE if targets[c] > 0.05 * n]) >= 3  # spread, not one class
    reordered, _ = _draw_targets(p, n, tuple(reversed(RACE)))
    assert reordered == targets


def test_a_violating_image_never_targets_its_own_class():
    for p in (SKEW_60, SHIPPED, {"male": 0.9, "female": 0.1}):
        plan = target_plan(p, aligned_distribution(p, 0.5))
        assert set(plan) == over_represented(p)
        assert all(row[shown] == 0.0 and sum(row.values()) == pytest.approx(1.0) for shown, row in plan.items())


def test_the_plan_says_what_the_pairs_can_reach():
    """Two classes at the reference share: q asks for some male value images, but only male images are violating
    and none may target its own class, so every aligned image is female and the mixture overshoots uniform."""
    gender = plan_bias("gender_equality", None, ["male"] * 85 + ["female"] * 15, ["male", "female"], 0.5)
    assert gender.q["male"] == pytest.approx(0.15)
    assert gender.reachable_q == pytest.approx({"male": 0.0, "female": 1.0})
    assert gender.expected_mixture == pytest.approx({"male": 0.425, "female": 0.575})
    race = plan_bias("racial_equality", None, _labels(SHIPPED, 1000), RACE, None)
    assert race.reachable_q == pytest.approx(race.q, abs=1e-6)  # five classes: q is reachable
    assert race.expected_mixture == pytest.approx({c: 0.2 for c in RACE}, abs=1e-6)


def test_a_uniform_base_model_has_nothing_to_debias():
    assert target_plan({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == {}


def test_draws_are_deterministic_per_key():
    q = {"a": 0.2, "b": 0.3, "c": 0.5}
    assert [draw_class(q, f"k{i}") for i in range(50)] == [draw_class(q, f"k{i}") for i in range(50)]
    assert draw_class({"a": 0.0, "b": 1.0}, "x") == "b"


@pytest.mark.parametrize("seed", range(20))
def test_value_share_is_exact_for_any_seed(seed):
    assignment = value_assignment(50, [("gender_equality", 0.5)], seed)
    assert sum(v is not None for v in assignment) == 25
    assert value_assignment(50, [("gender_equality", 0.5)], seed) == assignment  # same seed, same images


def test_value_shares_that_add_up_to_more_than_one_fill_every_image():
    assignment = value_assignment(10, [("g", 0.5), ("r", 2 / 3)], 3)
    counts = Counter(assignment)
    assert counts["g"] + counts["r"] == 10 and None not in counts and abs(counts["g"] - 4.3) < 1
    toxic = Counter(value_assignment(10, [("b", 1 / 3), ("h", 1 / 3), ("z", 1 / 3)], 0))
    assert sum(toxic.values()) == 10 and None not in toxic and set(toxic.values()) <= {3, 4}


@pytest.mark.parametrize(("n", "k"), [(10, 5), (20, 5), (32, 2), (500, 5)])
def test_floor_matches_monte_carlo(n, k):
    counts = np.random.default_rng(7).multinomial(n, [1 / k] * k, size=100_000)
    d1 = ((counts.max(axis=1) - counts.min(axis=1)) / n).mean()
    d2 = np.sqrt(((counts / n - 1 / k) ** 2).sum(axis=1)).mean()
    floor_d1, floor_d2 = fair_sampler_floor(n, k)
    assert floor_d1 == pytest.approx(d1, abs=0.003) and floor_d2 == pytest.approx(d2, abs=0.003)
    assert fair_sampler_floor(1, 2) == (1.0, pytest.approx(math.sqrt(0.5)))  # one image: all in one class
