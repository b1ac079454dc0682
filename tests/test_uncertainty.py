"""The probe's bootstrap interval against known cases and hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mmssl.evaluate.uncertainty import _roc_auc, bootstrap_ci


def test_a_perfect_classifier_has_the_interval_one_one() -> None:
    y = np.array([0, 1, 2, 1, 0, 2, 1, 1])
    assert bootstrap_ci(y, y.copy(), "accuracy") == (1.0, 1.0)
    yb = np.array([0, 0, 0, 1, 1, 1])
    assert bootstrap_ci(yb, np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]), "roc_auc") == (1.0, 1.0)


def test_accuracy_interval_width_is_close_to_the_normal_approximation() -> None:
    n, p = 400, 0.8
    y = np.zeros(n, int)
    pred = np.where(np.arange(n) < int(p * n), 0, 1)  # 320 of 400 right
    low, high = bootstrap_ci(y, pred, "accuracy")
    normal = 2 * 1.96 * np.sqrt(p * (1 - p) / n)  # 0.0784
    assert high - low == pytest.approx(normal, rel=0.1)
    assert low < p < high and (low + high) / 2 == pytest.approx(p, abs=0.01)


def test_interval_is_seeded_and_the_percentiles_of_the_resamples() -> None:
    rng = np.random.default_rng(3)
    y, pred = rng.integers(0, 2, 30), rng.integers(0, 2, 30)
    ci = bootstrap_ci(y, pred, "accuracy", n_resamples=200, seed=7)
    assert ci == bootstrap_ci(y, pred, "accuracy", n_resamples=200, seed=7)
    # by hand: the same 200 resamples of the rows, accuracy of each, 2.5 / 97.5 percentiles
    idx = np.random.default_rng(7).integers(0, 30, size=(200, 30))
    accs = (y[idx] == pred[idx]).mean(axis=1)
    assert ci == tuple(np.percentile(accs, [2.5, 97.5]))


def test_resampled_auc_is_sklearns_with_ties_and_skips_one_class_resamples() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, (50, 12))
    score = rng.integers(0, 4, (50, 12)).astype(float)  # many ties
    auc = _roc_auc(y, score)
    for row_y, row_s, a in zip(y, score, auc):
        if len(set(row_y.tolist())) < 2:
            assert np.isnan(a)
        else:
            assert a == pytest.approx(roc_auc_score(row_y, row_s))
    # 3 rows, 1 positive: many resamples hold one class only; they are skipped, not scored
    low, high = bootstrap_ci(np.array([0, 0, 1]), np.array([0.2, 0.9, 0.5]), "roc_auc")
    assert 0.0 <= low <= 0.5 <= high <= 1.0


def test_no_defined_resample_gives_nan_and_bad_input_raises() -> None:
    assert all(np.isnan(v) for v in bootstrap_ci(np.array([1, 1, 1]), np.array([0.1, 0.5, 0.9]), "roc_auc"))
    assert all(np.isnan(v) for v in bootstrap_ci(np.array([]), np.array([]), "accuracy"))
    with pytest.raises(ValueError, match="one of"):
        bootstrap_ci(np.array([1]), np.array([1]), "f1")
    with pytest.raises(ValueError, match=r"must both be \(N,\)"):
        bootstrap_ci(np.array([1, 0]), np.array([1]), "accuracy")
