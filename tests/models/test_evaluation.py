"""Evaluation as per-user terms: point metrics equal the plain formulas, intervals resample users,
and a comparison of two models draws the same users for both."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from downbeat.models import metrics as M
from downbeat.models.evaluation import (
    compare,
    evaluate,
    mean_terms,
    pair_metrics,
    pair_predictions,
    pair_terms,
    user_terms,
)
from downbeat.models.network import DOWN, PLAY, SKIP, UP
from downbeat.models.serving import score_frame
from downbeat.models.zoo import build_model
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
    model_settings = settings()[0]
    torch.manual_seed(0)
    model = build_model("hybrid", N_TRACKS, N_STATIONS, model_settings, (UP,)).eval()
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


# ---- next-item figures: reference scorers (a constant, a random and an oracle one) -------------------
N_CATALOG = 50


def next_rows(users: int = 40, cold: int = 10, seed: int = 0) -> pd.DataFrame:
    """eval_next rows: `users` users, the first `cold` with no history; each target positive."""
    rng = np.random.default_rng(seed)
    histories = [
        np.zeros(0, np.int64) if i < cold else rng.integers(1, N_CATALOG + 1, 5) for i in range(users)
    ]
    return pd.DataFrame(
        {
            "user_id": [f"u{i:02d}" for i in range(users)],
            "track_idx": rng.integers(1, N_CATALOG + 1, users),
            "station_idx": 0,
            "feedback_id": UP,
            "is_positive": True,
            "is_negative": False,
            "history_length": [len(h) for h in histories],
            "history_track_ids": histories,
            "history_station_ids": [np.zeros(len(h), np.int64) for h in histories],
            "history_feedback_ids": [np.full(len(h), UP) for h in histories],
        }
    )


NO_PAIRS = pd.DataFrame(
    columns=[
        "user_id",
        "station_id",
        "up_track_id",
        "down_track_id",
        "station_idx",
        "up_track_idx",
        "down_track_idx",
    ]
)


def scorer_of(score: object) -> object:
    """A serving scorer from score(request row, candidates) -> scores."""

    def scorer(frame: pd.DataFrame) -> pd.DataFrame:
        out = [
            np.asarray(score(frame.iloc[i], np.asarray(c)), dtype=np.float32)
            for i, c in enumerate(frame["candidate_track_ids"])
        ]
        return pd.DataFrame({"scores": out, "served": np.ones(len(frame), bool)})

    return scorer


def test_a_constant_scorer_gets_hr_0_and_paired_accuracy_one_half():
    rows = next_rows()
    pairs = pd.DataFrame(
        {
            "user_id": ["u20", "u20", "u30"],
            "station_id": None,
            "up_track_id": "a",
            "down_track_id": "b",
            "station_idx": 0,
            "up_track_idx": [1, 2, 3],
            "down_track_idx": [4, 5, 6],
        }
    )
    for constant in (0.0, 3.5, np.nan):
        got = evaluate(scorer_of(lambda _, c, v=constant: np.full(len(c), v)), pairs, rows, N_CATALOG).metrics
        assert got["hr@10_pos"] == 0.0 and got["ndcg@10_pos"] == 0.0 and got["map@10"] == 0.0
        assert got["paired_accuracy"] == 0.5


def test_an_oracle_gets_hr_1_and_a_random_scorer_about_k_over_the_catalog():
    rows = next_rows(users=400, cold=0)
    targets = iter(rows["track_idx"].tolist())  # the oracle knows each row's target (rows come in order)
    oracle = evaluate(scorer_of(lambda r, c: (c == next(targets)).astype(float)), NO_PAIRS, rows, N_CATALOG)
    assert oracle.metrics["hr@10_pos"] == 1.0 and oracle.metrics["ndcg@10_pos"] == 1.0
    rng = np.random.default_rng(1)
    random = evaluate(scorer_of(lambda _, c: rng.random(len(c))), NO_PAIRS, rows, N_CATALOG).metrics
    assert abs(random["hr@10_pos"] - 10 / N_CATALOG) < 0.06  # 400 users: a standard error of 0.02


def test_users_without_history_are_counted_apart_and_never_in_the_next_item_figures():
    rows = next_rows(users=40, cold=10)
    seen: list[int] = []

    def oracle_for_warm_only(frame: pd.DataFrame) -> pd.DataFrame:
        # an empty history is scored as a hit; a warm one as a miss: only the warm users may count
        seen.append(len(frame))
        out = []
        for i in range(len(frame)):
            empty = len(frame["history_track_ids"].iloc[i]) == 0
            out.append(np.where(np.arange(1, N_CATALOG + 1) == 1, 1.0, 0.0) if empty else np.zeros(N_CATALOG))
        return pd.DataFrame({"scores": out, "served": np.ones(len(frame), bool)})

    got = evaluate(oracle_for_warm_only, NO_PAIRS, rows, N_CATALOG).metrics
    assert got["next_users"] == 40 and got["next_users_scored"] == 30 and got["next_users_cold"] == 10
    assert got["hr@10_pos"] == 0.0 and got["next_pos"] == 30
    assert sum(seen) == 30  # cold users are not even scored


def test_a_next_item_request_asks_on_the_last_played_station_never_the_targets():
    # a masked model reads its query's station: the target's (a film's genre) would give it away
    rows = next_rows(users=3, cold=1)
    rows["station_idx"] = [5, 6, 7]  # the targets' stations
    rows["history_station_ids"] = [
        np.zeros(0, np.int64),
        np.array([1, 2, 3, 4, 2]),
        np.array([3, 3, 3, 3, 4]),
    ]
    asked: list[int] = []

    def recording(frame: pd.DataFrame) -> pd.DataFrame:
        asked.extend(frame["station_idx"].tolist())
        return pd.DataFrame(
            {"scores": [np.zeros(N_CATALOG)] * len(frame), "served": np.ones(len(frame), bool)}
        )

    evaluate(recording, NO_PAIRS, rows, N_CATALOG)
    assert asked == [2, 4]  # the cold user is not scored


def test_excluded_tracks_leave_the_ranking_and_the_next_best_moves_up():
    rows = next_rows(users=1, cold=0)
    rows["track_idx"] = [7]
    by_idx = lambda _, c: -c.astype(float)  # noqa: E731 - track 1 best, then 2, 3, ...
    assert evaluate(scorer_of(by_idx), NO_PAIRS, rows, N_CATALOG).next_ranks["rank"].tolist() == [7]
    rows["exclude_track_ids"] = [np.array([1, 2, 3, 99])]  # 99: outside the catalog, ignored
    assert evaluate(scorer_of(by_idx), NO_PAIRS, rows, N_CATALOG).next_ranks["rank"].tolist() == [4]
    rows["exclude_track_ids"] = [np.array([7])]  # an excluded target ranks last
    assert evaluate(scorer_of(by_idx), NO_PAIRS, rows, N_CATALOG).next_ranks["rank"].tolist() == [N_CATALOG]


def test_seed_averaged_terms_give_the_mean_of_each_runs_figures_and_refuse_other_users():
    runs = [user_terms(pair_terms(scored_pairs(seed, users=20, shift=seed))) for seed in (10, 11, 12)]
    averaged = mean_terms(runs).point()
    for name in ("paired_accuracy", "paired_accuracy_pooled"):
        assert averaged[name] == pytest.approx(np.mean([r.point()[name] for r in runs]))
    with pytest.raises(ValueError, match="different users"):
        mean_terms([runs[0], user_terms(pair_terms(scored_pairs(1, users=21)))])


def test_a_report_cell_marks_a_difference_smaller_than_its_spread_across_seeds():
    from downbeat.models.evaluation import Difference
    from downbeat.models.report import ChildResult, cell

    def child(spread: float) -> ChildResult:
        return ChildResult(
            name="b",
            model="sasrec",
            run_id="r",
            settings={},
            metrics={"ndcg@10_pos": 0.2},
            differences={"ndcg@10_pos": Difference(0.2, 0.18, 0.02, 0.01, 0.03)},
            best_epoch=0,
            epochs_run=1,
            seeds=3,
            spread={"ndcg@10_pos": 0.004},
            diff_spread={"ndcg@10_pos": spread},
        )

    assert cell(child(0.01), "ndcg@10_pos") == "0.2000 ±0.0040 (+0.0200 [+0.0100, +0.0300]*)"
    assert cell(child(0.05), "ndcg@10_pos").endswith("* (seed spread 0.0500))")
