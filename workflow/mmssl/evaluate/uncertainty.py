"""Uncertainty of a probe's score on its evaluation set: a percentile bootstrap over the
evaluation rows of the probed source (subjects for brain MRI, where ``embed`` keeps one
sample per subject; samples otherwise; only those having the source, so N may differ
between the sources of a run).

Each of ``N_RESAMPLES`` resamples draws the N evaluation rows with replacement and
recomputes the metric (accuracy, or ROC AUC; a ROC AUC resample holding a single class
has no AUC and is skipped). The interval is the 2.5th and 97.5th percentiles of the
resampled metrics (numpy's default linear interpolation). The generator is seeded with
``SEED``, so the interval is reproducible, and the sources of a run that share their
rows (every source, when every sample has every source) get the same resamples of them.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

N_RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
METRICS = ("accuracy", "roc_auc")
# resampled index arrays are built this many values at a time (bounds memory for big N)
_CHUNK_VALUES = 2_000_000


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(B, N) resampled labels and predictions -> (B,) accuracies."""
    return (y_true == y_pred).mean(axis=1)


def _roc_auc(y_true: np.ndarray, score: np.ndarray) -> np.ndarray:
    """(B, N) resampled 0/1 labels and scores -> (B,) ROC AUC, NaN for a one-class row.

    The Mann-Whitney form with average ranks for ties, which is what
    sklearn.metrics.roc_auc_score computes: (sum of the positives' ranks - n1(n1+1)/2) / (n1 n0).
    """
    ranks = rankdata(score, axis=1)
    pos = y_true == 1
    n1 = pos.sum(axis=1).astype(float)
    n0 = y_true.shape[1] - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * pos).sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)
    return np.where((n1 > 0) & (n0 > 0), auc, np.nan)


def bootstrap_ci(y_true: np.ndarray, y_score: np.ndarray, metric: str, n_resamples: int = N_RESAMPLES,
                 seed: int = SEED, level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval (low, high) of ``metric`` over the evaluation rows.

    y_true (N,): labels (0/1 for roc_auc). y_score (N,): predicted labels (accuracy) or
    positive-class scores (roc_auc). metric: 'accuracy' or 'roc_auc'. Returns (NaN, NaN)
    when no resample has a defined metric (e.g. N = 0, or one class only for roc_auc).
    """
    if metric not in METRICS:
        raise ValueError(f"bootstrap metric must be one of {list(METRICS)}; got {metric!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1); got {level}")
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    if y_true.shape != y_score.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_score must both be (N,); got {y_true.shape} and {y_score.shape}")
    n = len(y_true)
    if n == 0 or n_resamples < 1:
        return float("nan"), float("nan")
    stat = _accuracy if metric == "accuracy" else _roc_auc
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_VALUES // n)
    values = []
    for start in range(0, n_resamples, per_chunk):
        idx = rng.integers(0, n, size=(min(per_chunk, n_resamples - start), n))
        values.append(stat(y_true[idx], y_score[idx]))
    values = np.concatenate(values)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
