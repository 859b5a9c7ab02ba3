"""Cross-validated linear-probe accuracy: how linearly separable the two sides of the
pairs are at a site (Alain & Bengio 2016, "Understanding intermediate layers using linear
classifier probes"; Belinkov 2022, "Probing Classifiers: Promises, Shortcomings, and
Advances").

The probe is scikit-learn's L2-regularised logistic regression (C = 1, lbfgs) on
standardised features (the scaler is fitted inside each training fold), scored by
accuracy with k-fold cross-validation. Folds are stratified by side and grouped by pair
(``StratifiedGroupKFold``, shuffled with a seed): both texts of a pair are always in
the same fold, so a probe is never tested on the twin of a text it was trained on, whose
shared topic words would make separation look easier than it is. Labelled texts of two
classes (a classifier's localisation, :mod:`.classes`) have no pairs: their folds are
stratified by class only (``StratifiedKFold``, shuffled with the seed).

Two cautions from the probing literature: high accuracy shows that the information is
decodable, not that the model uses it (hence attribution and patching next to it); and
with many more dimensions than pairs, accuracy is often near 1 at most layers, so read
the probe as a filter and the attribution as the ranking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.core.errors import LocateError

INSTALL = "pip install 'steer-harness[locate]'"


def sklearn_problem(what: str = "steer-harness locate") -> str | None:
    """Why ``what`` cannot fit its probes (scikit-learn missing, with the install line),
    or None."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return f"{what} needs scikit-learn for its probes: {INSTALL}"
    return None


def require_sklearn() -> None:
    """Fail with the install line before any model is loaded."""
    problem = sklearn_problem()
    if problem is not None:
        raise LocateError(problem)


def probe_pipeline() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))


def probe_folds(folds: int, seed: int, grouped: bool = True) -> Any:
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if not grouped:
        return StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)


def probe_data(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels (1 positive, 0 negative) and groups (the pair index)."""
    n = pos.shape[0]
    x = np.concatenate([pos, neg]).astype(np.float64)
    y = np.concatenate([np.ones(n, dtype=int), np.zeros(n, dtype=int)])
    groups = np.concatenate([np.arange(n), np.arange(n)])
    return x, y, groups


@dataclass(frozen=True)
class ProbeResult:
    accuracy: float  # mean over folds
    folds: list[float]


def probe_accuracy(pos: np.ndarray, neg: np.ndarray, folds: int, seed: int) -> ProbeResult:
    """Cross-validated accuracy of a logistic probe separating ``pos`` from ``neg`` rows."""
    from sklearn.model_selection import cross_val_score

    n = pos.shape[0]
    if folds < 2:
        raise LocateError(f"--folds {folds}: cross-validation needs at least 2 folds")
    if n < folds:
        raise LocateError(f"--folds {folds}: only {n} pairs; give at most {n} folds")
    x, y, groups = probe_data(pos, neg)
    scores = cross_val_score(
        probe_pipeline(), x, y, groups=groups, cv=probe_folds(folds, seed), scoring="accuracy"
    )
    return ProbeResult(float(np.mean(scores)), [float(s) for s in scores])


def class_probe_accuracy(pos: np.ndarray, neg: np.ndarray, folds: int, seed: int) -> ProbeResult:
    """Cross-validated accuracy of the same probe separating two classes' texts (any
    numbers of rows each), folds stratified by class."""
    from sklearn.model_selection import cross_val_score

    smaller = min(pos.shape[0], neg.shape[0])
    if folds < 2:
        raise LocateError(f"--folds {folds}: cross-validation needs at least 2 folds")
    if smaller < folds:
        raise LocateError(
            f"--folds {folds}: a class has only {smaller} texts; give at most {smaller} folds"
        )
    x = np.concatenate([pos, neg]).astype(np.float64)
    y = np.concatenate([np.ones(pos.shape[0], dtype=int), np.zeros(neg.shape[0], dtype=int)])
    cv = probe_folds(folds, seed, grouped=False)
    scores = cross_val_score(probe_pipeline(), x, y, cv=cv, scoring="accuracy")
    return ProbeResult(float(np.mean(scores)), [float(s) for s in scores])
