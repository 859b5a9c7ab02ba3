"""Classification metrics on scores: AUROC by the Mann-Whitney statistic.

References: Mann, H. B. & Whitney, D. R. (1947), Ann. Math. Statist. 18, 50-60; Hanley,
J. A. & McNeil, B. J. (1982), Radiology 143, 29-36.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

__all__ = ["auroc"]


def auroc(
    scores: Sequence[float] | np.ndarray, positive: Sequence[bool] | np.ndarray
) -> float | None:
    """Mann-Whitney AUROC with mid-ranks; None when either class is empty."""
    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return None
    ranks = rankdata(s)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
