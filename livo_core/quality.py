"""Image-quality metrics that need CLIP weights: CLIP score (prompt fidelity) and the Fréchet distance between two
methods' CLIP image-feature distributions (FID computed on CLIP features, as in Kynkäänniemi et al. 2023)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg


def clip_scores(image_features: torch.Tensor, text_features: torch.Tensor) -> np.ndarray:
    """100 * max(cos, 0) of each image with its own prompt; both (N, D) unit-norm."""
    return (100 * (image_features * text_features).sum(dim=-1).clamp(min=0)).numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of two (N, D) feature sets."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a Fréchet distance needs >= 2 samples per set, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root  # numerical noise of sqrtm
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))
