"""Ranking metrics over scores, in numpy: each is a plain function a test can check by hand.

Ranks are 1-based over the full catalog; a target's rank is 1 + the number of tracks scoring
strictly higher (ties do not push it down).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def pair_outcomes(up_scores: np.ndarray, down_scores: np.ndarray) -> np.ndarray:
    """Per pair: 1 when the up track outscores the down track, 0.5 on a tie, else 0."""
    return (up_scores > down_scores).astype(np.float64) + 0.5 * (up_scores == down_scores)


def paired_accuracy(up_scores: np.ndarray, down_scores: np.ndarray) -> float:
    """Share of eval pairs whose up track outscores its down track, ties counting half."""
    return float(pair_outcomes(up_scores, down_scores).mean()) if len(up_scores) else float("nan")


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by the Mann-Whitney statistic (ties count half)."""
    positive, negative = scores[labels == 1], scores[labels == 0]
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([positive, negative]), kind="mergesort")
    ranks = np.empty(len(order), dtype=np.float64)
    values = np.concatenate([positive, negative])[order]
    # average ranks of tied values
    _, first, counts = np.unique(values, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float(
        (ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2)
        / (len(positive) * len(negative))
    )


def mean_user_auc(users: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over users of each user's AUC (users with only one class are left out)."""
    values = [auc(scores[users == u], labels[users == u]) for u in np.unique(users)]
    kept = [v for v in values if not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(N,) 1-based rank of each row's target column among all columns of `scores` (N, C)."""
    mine = scores[np.arange(len(targets)), targets]
    return 1 + (scores > mine[:, None]).sum(axis=1)


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """Share of targets ranked in the top k."""
    return float((ranks <= k).mean()) if len(ranks) else float("nan")


def ndcg(ranks: np.ndarray, k: int) -> float:
    """Mean NDCG@k with one relevant item per row: 1 / log2(rank + 1) inside the top k."""
    if not len(ranks):
        return float("nan")
    return float(np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0).mean())


def mrr(ranks: np.ndarray, k: int) -> float:
    """Mean reciprocal rank, 0 beyond the top k. With one relevant item per row it is also MAP@k."""
    if not len(ranks):
        return float("nan")
    return float(np.where(ranks <= k, 1.0 / ranks, 0.0).mean())


def bootstrap_interval(
    groups: np.ndarray,
    values: np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    samples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of `statistic(values)` resampling whole groups (users) with replacement.

    Pairs of one user are not independent, so users, not pairs, are what is drawn.
    """
    if not len(values):
        return float("nan"), float("nan")
    unique, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(unique))]
    rng = np.random.default_rng(seed)
    stats = np.empty(samples)
    for s in range(samples):
        chosen = rng.integers(0, len(unique), len(unique))
        stats[s] = statistic(values[np.concatenate([members[i] for i in chosen])])
    tail = (1 - level) / 2
    return float(np.quantile(stats, tail)), float(np.quantile(stats, 1 - tail))
