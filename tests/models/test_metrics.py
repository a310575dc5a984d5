"""Ranking metrics against scikit-learn and brute-force references."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from downbeat.models import metrics as M


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


def test_paired_accuracy_is_the_mean_over_users_of_their_share_of_pairs_won_with_ties_half():
    users = np.array(["a", "a", "a", "b"])
    up = np.array([2.0, 1.0, 1.0, 0.0])
    down = np.array([1.0, 1.0, 3.0, -1.0])
    assert M.paired_accuracy(users, up, down) == ((1 + 0.5 + 0) / 3 + 1) / 2
    assert M.paired_accuracy_pooled(up, down) == (1 + 0.5 + 0 + 1) / 4


@given(
    st.lists(st.integers(0, 3), min_size=1, max_size=6), st.lists(st.integers(0, 3), min_size=1, max_size=6)
)
def test_paired_accuracy_of_all_up_down_pairs_of_a_user_is_that_users_sklearn_auc(ups, downs):
    up = np.array([u for u in ups for _ in downs], dtype=float)
    down = np.array([d for _ in ups for d in downs], dtype=float)
    users = np.zeros(len(up))
    labels = np.r_[np.ones(len(ups)), np.zeros(len(downs))]
    scores = np.r_[np.array(ups, float), np.array(downs, float)]
    assert math.isclose(M.paired_accuracy(users, up, down), roc_auc_score(labels, scores), abs_tol=1e-12)


def test_ranks_hit_rate_ndcg_and_mrr_match_brute_force():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, (30, 12)).astype(float)
    targets = rng.integers(0, 12, 30)
    ranks = M.target_ranks(scores, targets)
    for i in range(30):
        others = [j for j in range(12) if j != targets[i]]
        assert ranks[i] == 1 + sum(scores[i, j] >= scores[i, targets[i]] for j in others)
    for k in (1, 5, 10):
        assert M.hit_rate(ranks, k) == np.mean([r <= k for r in ranks])
        assert math.isclose(M.ndcg(ranks, k), np.mean([1 / math.log2(r + 1) if r <= k else 0 for r in ranks]))
        assert math.isclose(M.mrr(ranks, k), np.mean([1 / r if r <= k else 0 for r in ranks]))


def test_bootstrap_weights_draw_each_resample_as_many_users_as_there_are_and_repeat_under_a_seed():
    weights = M.bootstrap_weights(7, samples=50, seed=1)
    assert weights.shape == (50, 7) and (weights.sum(axis=1) == 7).all()
    assert (weights == M.bootstrap_weights(7, samples=50, seed=1)).all()
    assert not (weights == M.bootstrap_weights(7, samples=50, seed=2)).all()
    assert len({tuple(w) for w in weights}) > 40  # resamples differ from each other


def test_per_user_sums_and_counts_cover_the_universe_in_order():
    sums, counts = M.per_user(np.array(["b", "a", "b"]), np.array([1.0, 2.0, 4.0]), np.array(["a", "b", "c"]))
    assert sums.tolist() == [2.0, 5.0, 0.0] and counts.tolist() == [1.0, 2.0, 0.0]


def test_a_tie_never_favours_the_target_so_a_constant_scorer_ranks_every_target_last():
    scores = np.full((5, 8), 0.25)
    ranks = M.target_ranks(scores, np.arange(5))
    assert ranks.tolist() == [8] * 5
    assert M.hit_rate(ranks, 5) == 0.0 and M.ndcg(ranks, 5) == 0.0
    tied = np.array([[3.0, 1.0, 3.0, 2.0]])  # the target shares first place with column 0
    assert M.target_ranks(tied, np.array([2])).tolist() == [2]


def test_a_nan_score_ranks_last_in_ranks_and_loses_its_pairs():
    scores = np.array([[np.nan, 1.0, 2.0], [0.5, np.nan, -3.0]])
    assert M.target_ranks(scores, np.array([0, 0])).tolist() == [3, 1]
    assert M.target_ranks(np.full((1, 4), np.nan), np.array([1])).tolist() == [4]
    outcomes = M.pair_outcomes(np.array([np.nan, 1.0, np.nan]), np.array([0.0, np.nan, np.nan]))
    assert outcomes.tolist() == [0.0, 1.0, 0.5]
