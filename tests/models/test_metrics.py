"""Ranking metrics against scikit-learn and brute-force references."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from models import metrics as M


@given(
    st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=2, max_size=40),
)
def test_auc_equals_sklearn_roc_auc_score_with_ties(rows):
    scores = np.array([s for s, _ in rows], dtype=float)  # few distinct values: many ties
    labels = np.array([int(y) for _, y in rows])
    if labels.min() == labels.max():
        assert math.isnan(M.auc(scores, labels))
    else:
        assert math.isclose(M.auc(scores, labels), roc_auc_score(labels, scores), abs_tol=1e-12)


def test_mean_user_auc_averages_per_user_sklearn_values_and_skips_one_class_users():
    users = np.array(["a"] * 4 + ["b"] * 3 + ["c"] * 2)
    scores = np.array([0.9, 0.1, 0.5, 0.5, 0.2, 0.8, 0.4, 0.3, 0.7])
    labels = np.array([1, 0, 1, 0, 1, 0, 0, 1, 1])
    expected = np.mean([roc_auc_score(labels[:4], scores[:4]), roc_auc_score(labels[4:7], scores[4:7])])
    assert math.isclose(M.mean_user_auc(users, scores, labels), expected)


def test_paired_accuracy_counts_ties_as_half():
    up = np.array([2.0, 1.0, 1.0, 0.0])
    down = np.array([1.0, 1.0, 3.0, 0.0])
    assert M.paired_accuracy(up, down) == (1 + 0.5 + 0 + 0.5) / 4


def test_ranks_hit_rate_ndcg_and_mrr_match_brute_force():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, (30, 12)).astype(float)
    targets = rng.integers(0, 12, 30)
    ranks = M.target_ranks(scores, targets)
    for i in range(30):
        assert ranks[i] == 1 + sum(scores[i, j] > scores[i, targets[i]] for j in range(12))
    for k in (1, 5, 10):
        assert M.hit_rate(ranks, k) == np.mean([r <= k for r in ranks])
        assert math.isclose(M.ndcg(ranks, k), np.mean([1 / math.log2(r + 1) if r <= k else 0 for r in ranks]))
        assert math.isclose(M.mrr(ranks, k), np.mean([1 / r if r <= k else 0 for r in ranks]))


def test_bootstrap_interval_resamples_users_and_is_reproducible():
    users = np.repeat(np.arange(50), 4)
    values = (np.arange(200) % 3 == 0).astype(float)
    low, high = M.bootstrap_interval(users, values, samples=300, seed=1)
    assert low < values.mean() < high
    assert (low, high) == M.bootstrap_interval(users, values, samples=300, seed=1)
    one_user = M.bootstrap_interval(np.zeros(10), values[:10], samples=50)
    assert one_user[0] == one_user[1] == values[:10].mean()
