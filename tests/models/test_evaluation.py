"""Evaluation as per-user terms: point metrics equal the plain formulas, intervals resample users,
and a comparison of two models draws the same users for both."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from models import metrics as M
from models.evaluation import compare, pair_metrics, pair_predictions, pair_terms, user_terms
from models.network import DOWN, PLAY, SKIP, UP
from models.serving import score_frame
from models.zoo import build_model
from tests.models.helpers import N_STATIONS, N_TRACKS, settings


def scored_pairs(seed: int, users: int = 30, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 12, users)
    ids = np.repeat([f"u{i:02d}" for i in range(users)], counts)
    skill = np.repeat(rng.normal(0, 1.5, users), counts)  # users differ a lot: wide marginal intervals
    up = rng.normal(skill + shift, 1.0)
    return pd.DataFrame({"user_id": ids, "up_score": up, "down_score": rng.normal(0, 1.0, len(ids))})


def test_pair_metrics_equal_the_plain_formulas():
    pairs = scored_pairs(0)
    users, up, down = (
        pairs["user_id"].to_numpy(),
        pairs["up_score"].to_numpy(),
        pairs["down_score"].to_numpy(),
    )
    values = pair_metrics(pairs)
    assert values["paired_accuracy"] == pytest.approx(M.paired_accuracy(users, up, down))
    assert values["paired_accuracy_pooled"] == pytest.approx(M.paired_accuracy_pooled(up, down))
    labels = np.r_[np.ones(len(up)), np.zeros(len(down))]
    assert values["auc"] == pytest.approx(M.mean_user_auc(np.r_[users, users], np.r_[up, down], labels))


def test_a_model_compared_with_itself_differs_by_exactly_zero():
    terms = user_terms(pair_terms(scored_pairs(1)))
    result = compare(terms, terms, samples=200, seed=0)
    for d in result.values():
        assert d.diff == 0.0 and d.diff_low == 0.0 and d.diff_high == 0.0


def test_the_comparison_is_paired_a_constant_per_user_gain_has_a_degenerate_interval():
    a = user_terms(pair_terms(scored_pairs(2)))
    b = user_terms(pair_terms(scored_pairs(2)))
    # every user's paired accuracy is 0.05 lower under b: each resample's difference is exactly 0.05
    b.sums["paired_accuracy"] = b.sums["paired_accuracy"] - 0.05 * b.counts["paired_accuracy"]
    d = compare(a, b, samples=300, seed=0)["paired_accuracy"]
    assert d.diff == pytest.approx(0.05)
    assert d.diff_low == pytest.approx(0.05) and d.diff_high == pytest.approx(0.05)
    # unpaired, the same data would give wide marginal intervals
    draws = a.values(M.bootstrap_weights(len(a.users), 300, 0))["paired_accuracy"]
    low, high = M.percentile_interval(draws)
    assert high - low > 0.1


def test_a_better_model_gets_an_interval_above_zero_and_a_same_model_one_around_zero():
    better = user_terms(pair_terms(scored_pairs(3, users=60, shift=1.0)))
    worse = user_terms(pair_terms(scored_pairs(3, users=60, shift=0.0)))
    d = compare(better, worse, samples=500, seed=0)["paired_accuracy"]
    assert d.diff > 0 and d.diff_low > 0
    noise = user_terms(pair_terms(scored_pairs(4, users=60)))
    e = compare(noise, user_terms(pair_terms(scored_pairs(5, users=60))), samples=500, seed=0)[
        "paired_accuracy"
    ]
    assert e.diff_low < 0 < e.diff_high or math.isclose(e.diff, 0.0)


def test_models_scored_on_different_users_cannot_be_compared():
    a = user_terms(pair_terms(scored_pairs(6, users=10)))
    b = user_terms(pair_terms(scored_pairs(6, users=11)))
    with pytest.raises(ValueError, match="different users"):
        compare(a, b)


def test_pairs_scored_per_user_and_station_equal_pairs_scored_one_by_one():
    model_settings, train_settings = settings()
    torch.manual_seed(0)
    model = build_model("hybrid", N_TRACKS, N_STATIONS, model_settings, train_settings, (UP,)).eval()
    rng = np.random.default_rng(0)
    pairs = pd.DataFrame(
        {
            "user_id": rng.choice(["a", "b", "c"], 40),
            "station_id": "s",
            "up_track_id": "x",
            "down_track_id": "y",
            "station_idx": rng.integers(0, N_STATIONS + 1, 40),
            "up_track_idx": rng.integers(1, N_TRACKS + 1, 40),
            "down_track_idx": rng.integers(1, N_TRACKS + 1, 40),
        }
    )
    histories = pd.DataFrame(
        {
            "user_id": ["a", "b"],  # c has no history: scored from an empty one
            "history_track_ids": [np.array([3, 4, 5]), np.array([7])],
            "history_station_ids": [np.array([1, 1, 2]), np.array([3])],
            "history_feedback_ids": [np.array([UP, SKIP, DOWN]), np.array([PLAY])],
        }
    )
    grouped = pair_predictions(lambda f: score_frame(model, f), pairs, histories, chunk=2)
    for i, pair in pairs.iterrows():
        one = pair_predictions(lambda f: score_frame(model, f), pairs.iloc[[i]], histories)
        assert grouped.loc[i, "up_score"] == pytest.approx(one.loc[0, "up_score"], abs=1e-5)
        assert grouped.loc[i, "down_score"] == pytest.approx(one.loc[0, "down_score"], abs=1e-5)
        assert grouped.loc[i, "user_id"] == pair["user_id"]
