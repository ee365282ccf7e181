"""Vector helpers shared by strategies and the near-duplicate guard (imports no strategy)."""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation; zero rows stay zero. Returns float32 C-contiguous."""
    x = np.array(x, dtype="float32", order="C", copy=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    x /= norms
    return x
