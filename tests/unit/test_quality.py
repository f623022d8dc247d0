"""CLIP score and the Fréchet distance against hand-computable cases."""

import numpy as np
import pytest
import torch

from livo_core.quality import clip_scores, frechet_distance


def test_frechet_distance_of_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    shifted = a + np.array([1.0, 2.0, 0.0])  # same covariance: the distance is |mu_a - mu_b|^2 = 5
    assert frechet_distance(a, shifted) == pytest.approx(5.0, rel=1e-6)
    scaled = a * 2.0  # covariance 4I vs I: Tr(I + 4I - 2 * 2I) = 3
    assert frechet_distance(a, scaled) == pytest.approx(3.0, rel=0.05)
    with pytest.raises(ValueError, match=">= 2 samples"):
        frechet_distance(a[:1], a)


def test_clip_scores_are_100_times_clipped_cosine():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    texts = torch.tensor([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])
    assert clip_scores(images, texts).tolist() == pytest.approx([100.0, 80.0, 0.0])
