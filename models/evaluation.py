"""The test metrics of a scorer on gold/eval_pairs and gold/eval_next (full ranking over the catalog).

A scorer is anything that maps a serving frame (models.serving.INPUT_COLUMNS) to `scores` and
`served`: a model in this process, or an MLflow pyfunc loaded from any URI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models import metrics as M
from models.network import DOWN, PLAY, SKIP, UP
from models.serving import (
    CANDIDATES,
    HISTORY_FEEDBACK,
    HISTORY_STATIONS,
    HISTORY_TRACKS,
    SCORES,
    SERVED,
    STATION,
)

Scorer = Callable[[pd.DataFrame], pd.DataFrame]
K = 10


@dataclass
class Evaluation:
    metrics: dict[str, float]
    predictions: pd.DataFrame  # one row per eval pair: ids, up_score, down_score
    next_ranks: pd.DataFrame  # one row per eval_next user: user_id, feedback_id, rank, served


def pair_predictions(
    scorer: Scorer, pairs: pd.DataFrame, next_rows: pd.DataFrame, *, chunk: int = 256
) -> pd.DataFrame:
    """One row per eval pair: its ids, `up_score` and `down_score`, each scored from the user's
    pre-cut-off history (taken from `next_rows`, gold/eval_next) on the pair's station."""
    histories = next_rows[["user_id", HISTORY_TRACKS, HISTORY_STATIONS, HISTORY_FEEDBACK]]
    joined = pairs.merge(histories, on="user_id", how="left")
    for column in (HISTORY_TRACKS, HISTORY_STATIONS, HISTORY_FEEDBACK):
        joined[column] = [
            x if isinstance(x, np.ndarray | list) else np.zeros(0, np.int64) for x in joined[column]
        ]
    request = pd.DataFrame(
        {
            HISTORY_TRACKS: joined[HISTORY_TRACKS],
            HISTORY_STATIONS: joined[HISTORY_STATIONS],
            HISTORY_FEEDBACK: joined[HISTORY_FEEDBACK],
            STATION: joined["station_idx"].astype(np.int64),
            CANDIDATES: [
                np.array([u, d], dtype=np.int64)
                for u, d in zip(joined["up_track_idx"], joined["down_track_idx"], strict=True)
            ],
        }
    )
    scores = _score(scorer, request, chunk)
    return pd.DataFrame(
        {
            "user_id": joined["user_id"],
            "station_id": joined["station_id"],
            "up_track_id": joined["up_track_id"],
            "down_track_id": joined["down_track_id"],
            "up_score": np.array([s[0] for s in scores[SCORES]], dtype=np.float64),
            "down_score": np.array([s[1] for s in scores[SCORES]], dtype=np.float64),
        }
    )


def evaluate(
    scorer: Scorer,
    pairs: pd.DataFrame,
    next_rows: pd.DataFrame,
    n_tracks: int,
    *,
    chunk: int = 256,
    bootstrap: int = 0,
    seed: int = 0,
) -> Evaluation:
    """Metrics of `scorer`. pairs: gold/eval_pairs rows; next_rows: gold/eval_next rows (which also
    hold every pair user's pre-cut-off history).

    Keys: paired_accuracy, auc (mean per-user), hr@10_pos/neg/diff, ndcg@10_pos/neg/diff, map@10
    (positive targets), skip_mrr@10 (skipped targets, lower is better), coverage (share of eval
    users served), and counts. With `bootstrap` > 0, `<metric>_ci_low/_ci_high` resampling users.
    """
    predictions = pair_predictions(scorer, pairs, next_rows, chunk=chunk)
    up = predictions["up_score"].to_numpy()
    down = predictions["down_score"].to_numpy()

    catalog = np.arange(1, n_tracks + 1, dtype=np.int64)
    next_request = pd.DataFrame(
        {
            HISTORY_TRACKS: next_rows[HISTORY_TRACKS],
            HISTORY_STATIONS: next_rows[HISTORY_STATIONS],
            HISTORY_FEEDBACK: next_rows[HISTORY_FEEDBACK],
            STATION: next_rows["station_idx"].astype(np.int64),
            CANDIDATES: [catalog] * len(next_rows),
        }
    )
    next_scores = _score(scorer, next_request, max(1, min(chunk, 64)))
    full = np.stack(list(next_scores[SCORES])) if len(next_scores) else np.zeros((0, n_tracks))
    targets = next_rows["track_idx"].to_numpy(dtype=np.int64) - 1  # column of track idx i is i - 1
    ranks = M.target_ranks(full, targets) if len(full) else np.zeros(0, np.int64)
    feedback = next_rows["feedback_id"].to_numpy()
    has_up = bool((feedback == UP).any())
    positive = (feedback == UP) | ((feedback == PLAY) & (not has_up))
    negative = (feedback == DOWN) | (feedback == SKIP)
    skipped = feedback == SKIP
    served = next_scores[SERVED].to_numpy(dtype=bool)
    next_ranks = pd.DataFrame(
        {"user_id": next_rows["user_id"].to_numpy(), "feedback_id": feedback, "rank": ranks, "served": served}
    )

    users = predictions["user_id"].to_numpy()
    labels = np.concatenate([np.ones(len(up)), np.zeros(len(down))])
    metrics = {
        "paired_accuracy": M.paired_accuracy(up, down),
        "auc": M.mean_user_auc(np.concatenate([users, users]), np.concatenate([up, down]), labels),
        f"hr@{K}_pos": M.hit_rate(ranks[positive], K),
        f"hr@{K}_neg": M.hit_rate(ranks[negative], K),
        f"ndcg@{K}_pos": M.ndcg(ranks[positive], K),
        f"ndcg@{K}_neg": M.ndcg(ranks[negative], K),
        f"map@{K}": M.mrr(ranks[positive], K),
        f"skip_mrr@{K}": M.mrr(ranks[skipped], K),
        "coverage": float(served.mean()) if len(served) else float("nan"),
        "pairs": float(len(up)),
        "pair_users": float(len(np.unique(users))),
        "next_users": float(len(next_rows)),
        "next_pos": float(positive.sum()),
        "next_neg": float(negative.sum()),
    }
    metrics[f"hr@{K}_diff"] = metrics[f"hr@{K}_pos"] - metrics[f"hr@{K}_neg"]
    metrics[f"ndcg@{K}_diff"] = metrics[f"ndcg@{K}_pos"] - metrics[f"ndcg@{K}_neg"]
    if bootstrap > 0:
        outcomes = M.pair_outcomes(up, down)
        next_users = next_ranks["user_id"].to_numpy()
        intervals = {
            "paired_accuracy": M.bootstrap_interval(users, outcomes, samples=bootstrap, seed=seed),
            f"hr@{K}_pos": M.bootstrap_interval(
                next_users[positive], (ranks[positive] <= K).astype(float), samples=bootstrap, seed=seed
            ),
            f"hr@{K}_neg": M.bootstrap_interval(
                next_users[negative], (ranks[negative] <= K).astype(float), samples=bootstrap, seed=seed
            ),
            f"ndcg@{K}_pos": M.bootstrap_interval(
                next_users[positive], _gain(ranks[positive]), samples=bootstrap, seed=seed
            ),
            f"ndcg@{K}_neg": M.bootstrap_interval(
                next_users[negative], _gain(ranks[negative]), samples=bootstrap, seed=seed
            ),
        }
        for name, (low, high) in intervals.items():
            metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = low, high
    return Evaluation(metrics, predictions, next_ranks)


def _gain(ranks: np.ndarray) -> np.ndarray:
    return np.where(ranks <= K, 1.0 / np.log2(ranks + 1.0), 0.0)


def _score(scorer: Scorer, request: pd.DataFrame, chunk: int) -> pd.DataFrame:
    if not len(request):
        return pd.DataFrame({SCORES: [], SERVED: np.zeros(0, bool)})
    parts = [
        scorer(request.iloc[i : i + chunk].reset_index(drop=True)) for i in range(0, len(request), chunk)
    ]
    return pd.concat(parts, ignore_index=True)
