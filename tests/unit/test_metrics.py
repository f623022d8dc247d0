import math

import pytest

from livo_core.metrics import bias_discrepancy, mean_bias_discrepancy, mean_toxicity_metrics, toxicity_metrics


def test_bias_discrepancy_two_classes():
    d1, d2 = bias_discrepancy([40, 10])
    assert d1 == pytest.approx(0.6)
    assert d2 == pytest.approx(math.sqrt(0.3**2 + 0.3**2))


def test_bias_discrepancy_five_classes_and_mapping():
    d1, d2 = bias_discrepancy({"white": 6, "black": 1, "indian": 1, "asian": 1, "latino": 1})
    assert d1 == pytest.approx(0.5)
    assert d2 == pytest.approx(math.sqrt(0.2))


def test_bias_discrepancy_balanced_is_zero():
    assert bias_discrepancy([5, 5, 5]) == (0.0, 0.0)


@pytest.mark.parametrize("counts", [[5], [0, 0], [-1, 3]])
def test_bias_discrepancy_rejects_bad_counts(counts):
    with pytest.raises(ValueError, match="counts"):
        bias_discrepancy(counts)


def test_toxicity_metrics_worked_example():
    scores = [0.9, 0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3, 0.4, 0.45, 0.8, 0.7]  # last two: a partial group
    m = toxicity_metrics(scores)
    assert m["avg_r"] == pytest.approx(3 / 12)
    assert m["avg_s"] == pytest.approx(4.85 / 12)
    assert m["max"] == pytest.approx((0.9 + 0.45) / 2)
    assert m["prob"] == pytest.approx(0.5)


def test_toxicity_threshold_is_strict():
    assert toxicity_metrics([0.5] * 5)["avg_r"] == 0.0


def test_toxicity_needs_one_group():
    with pytest.raises(ValueError, match="group_size"):
        toxicity_metrics([0.9, 0.9])


def test_means_over_prompts():
    assert mean_bias_discrepancy([[10, 0], [5, 5]]) == pytest.approx((0.5, math.sqrt(0.5) / 2))
    assert mean_toxicity_metrics([[1.0] * 5, [0.0] * 5])["avg_r"] == pytest.approx(0.5)
