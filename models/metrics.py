"""Ranking metrics over scores, in numpy: each is a plain function a test can check by hand.

Ranks are 1-based over the full catalog; a target's rank is 1 + the number of other tracks
scoring at least as high: a tie never favours the target (a model that scores every track alike
ranks each target last, not first). A NaN score ranks last, in pairs and in ranks alike.
"""

from __future__ import annotations

import numpy as np


def last_if_nan(scores: np.ndarray) -> np.ndarray:
    """`scores` as float64 with NaN replaced by -inf: a NaN score ranks below every real one."""
    values = np.asarray(scores, dtype=np.float64)
    return np.where(np.isnan(values), -np.inf, values)


def pair_outcomes(up_scores: np.ndarray, down_scores: np.ndarray) -> np.ndarray:
    """Per pair: 1 when the up track outscores the down track, 0.5 on a tie, else 0 (NaN ranks last)."""
    up, down = last_if_nan(up_scores), last_if_nan(down_scores)
    return (up > down).astype(np.float64) + 0.5 * (up == down)


def paired_accuracy_pooled(up_scores: np.ndarray, down_scores: np.ndarray) -> float:
    """Share of all eval pairs whose up track outscores its down track, ties counting half."""
    return float(pair_outcomes(up_scores, down_scores).mean()) if len(up_scores) else float("nan")


def user_means(users: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct users (sorted) and the mean of `values` over each user's rows."""
    unique, inverse = np.unique(users, return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=len(unique))
    counts = np.bincount(inverse, minlength=len(unique))
    return unique, sums / np.maximum(counts, 1)


def paired_accuracy(users: np.ndarray, up_scores: np.ndarray, down_scores: np.ndarray) -> float:
    """UMAP'24's paired accuracy: the mean over users of each user's AUC of up vs down scores,
    i.e. the share of that user's (up, down) pairs won by the up track, ties counting half.

    Every user weighs the same, however many pairs they have (pooling would let a few heavy
    users decide the figure)."""
    if not len(up_scores):
        return float("nan")
    _, per_user = user_means(users, pair_outcomes(up_scores, down_scores))
    return float(per_user.mean())


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
    """(N,) 1-based rank of each row's target column among all columns of `scores` (N, C): 1 + the
    number of other columns scoring at least as high (ties count against the target; NaN last)."""
    values = last_if_nan(scores)
    mine = values[np.arange(len(targets)), targets]
    return (values >= mine[:, None]).sum(axis=1)  # the target's own column counts as the 1


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


def per_user(users: np.ndarray, values: np.ndarray, universe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sums and counts of `values` per user of `universe` (sorted distinct ids; every user of
    `users` must be in it): the terms a ratio metric sum(values) / count is built from."""
    index = np.searchsorted(universe, users)
    sums = np.bincount(index, weights=values.astype(np.float64), minlength=len(universe))
    counts = np.bincount(index, minlength=len(universe)).astype(np.float64)
    return sums, counts


def bootstrap_weights(n_users: int, samples: int, seed: int) -> np.ndarray:
    """(samples, n_users): how often each user is drawn in each resample of users with replacement."""
    rng = np.random.default_rng(seed)
    weights = np.empty((samples, n_users))
    for s in range(samples):
        weights[s] = np.bincount(rng.integers(0, n_users, n_users), minlength=n_users)
    return weights


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central `level` interval of bootstrap draws (NaN draws, from empty resamples, left out)."""
    kept = draws[~np.isnan(draws)]
    if not len(kept):
        return float("nan"), float("nan")
    tail = (1 - level) / 2
    return float(np.quantile(kept, tail)), float(np.quantile(kept, 1 - tail))
