"""The test metrics of a scorer on gold/eval_pairs and gold/eval_next (full ranking over the catalog).

A scorer is anything that maps a serving frame (models.serving.INPUT_COLUMNS) to `scores` and
`served`: a model in this process, or an MLflow pyfunc loaded from any URI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from downbeat.models import metrics as M
from downbeat.models.contract import (
    DOWN_TRACK_ID,
    DOWN_TRACK_IDX,
    EXCLUDE_TRACK_IDS,
    FEEDBACK_ID,
    HISTORY_LENGTH,
    IS_NEGATIVE,
    IS_POSITIVE,
    SKIP_ID,
    STATION_ID,
    STATION_IDX,
    TRACK_IDX,
    UP_TRACK_ID,
    UP_TRACK_IDX,
    USER_ID,
    Tables,
)
from downbeat.models.serving import (
    CANDIDATES,
    HISTORY_FEEDBACK,
    HISTORY_STATIONS,
    HISTORY_TRACKS,
    SCORES,
    SERVED,
    STATION,
)

# The tables evaluate, compare and experiment score on; leave-one-out has one target per user,
# so it has no pairs.
EVAL_TABLES = (Tables.EVAL_PAIRS, Tables.EVAL_NEXT, Tables.TRACKS)
MAY_BE_EMPTY = (Tables.EVAL_PAIRS,)

# the figures evaluate and compare print, in order
SHOWN = (
    "paired_accuracy",
    "paired_accuracy_pooled",
    "auc",
    "hr@10_pos",
    "hr@10_neg",
    "hr@10_diff",
    "ndcg@10_pos",
    "ndcg@10_neg",
    "ndcg@10_diff",
    "map@10",
    "skip_mrr@10",
    "coverage",
)

Scorer = Callable[[pd.DataFrame], pd.DataFrame]
K = 10


@dataclass
class Evaluation:
    metrics: dict[str, float]
    predictions: pd.DataFrame  # one row per eval pair: ids, up_score, down_score
    next_ranks: pd.DataFrame  # one row per eval_next user: user_id, feedback_id, rank, served
    terms: UserTerms  # per-user terms of every metric (for intervals and paired comparisons)


def pair_predictions(
    scorer: Scorer, pairs: pd.DataFrame, next_rows: pd.DataFrame, *, chunk: int = 256
) -> pd.DataFrame:
    """One row per eval pair: its ids, `up_score` and `down_score`, each scored from the user's
    pre-cut-off history (taken from `next_rows`, gold/eval_next) on the pair's station.

    One request per (user, station) scores every track of that user's pairs on that station at
    once: a score depends only on the history, the station and the track, and users have tens of
    pairs, so this is one model pass where one per pair would repeat the same history."""
    if not len(pairs):  # none (leave-one-out has one target per user), maybe not even columns
        columns = (USER_ID, STATION_ID, UP_TRACK_ID, DOWN_TRACK_ID, "up_score", "down_score")
        return pd.DataFrame({c: np.zeros(0, np.float64 if c.endswith("score") else object) for c in columns})
    histories = next_rows[[USER_ID, HISTORY_TRACKS, HISTORY_STATIONS, HISTORY_FEEDBACK]]
    joined = pairs.reset_index(drop=True).merge(histories, on=USER_ID, how="left")
    empty = np.zeros(0, np.int64)
    up_idx = joined[UP_TRACK_IDX].to_numpy(dtype=np.int64)
    down_idx = joined[DOWN_TRACK_IDX].to_numpy(dtype=np.int64)
    groups = list(joined.groupby([USER_ID, STATION_IDX], sort=True).indices.values()) if len(joined) else []
    candidates = [np.unique(np.concatenate([up_idx[g], down_idx[g]])) for g in groups]
    first = [int(g[0]) for g in groups]

    def history(column: str) -> list[np.ndarray]:
        values = joined[column].to_numpy()
        return [values[i] if isinstance(values[i], np.ndarray | list) else empty for i in first]

    request = pd.DataFrame(
        {
            HISTORY_TRACKS: history(HISTORY_TRACKS),
            HISTORY_STATIONS: history(HISTORY_STATIONS),
            HISTORY_FEEDBACK: history(HISTORY_FEEDBACK),
            STATION: joined[STATION_IDX].to_numpy(dtype=np.int64)[first],
            CANDIDATES: candidates,
        }
    )
    scores = _score(scorer, request, chunk)
    up = np.empty(len(joined), dtype=np.float64)
    down = np.empty(len(joined), dtype=np.float64)
    for rows, tracks, scored in zip(groups, candidates, scores[SCORES], strict=True):
        values = np.asarray(scored, dtype=np.float64)
        up[rows] = values[np.searchsorted(tracks, up_idx[rows])]
        down[rows] = values[np.searchsorted(tracks, down_idx[rows])]
    return pd.DataFrame(
        {
            USER_ID: joined[USER_ID],
            STATION_ID: joined[STATION_ID],
            UP_TRACK_ID: joined[UP_TRACK_ID],
            DOWN_TRACK_ID: joined[DOWN_TRACK_ID],
            "up_score": up,
            "down_score": down,
        }
    )


EXTRA_CUTOFFS = (1, 5, 20)  # hit rates of positive targets besides K (RecSys'24 reports 1, 5, 10, 20)
# What evaluate() reports for a model, each with a paired interval in compare().
METRICS = (
    "paired_accuracy",
    "paired_accuracy_pooled",
    "auc",
    *(f"hr@{k}_pos" for k in EXTRA_CUTOFFS),
    f"hr@{K}_pos",
    f"hr@{K}_neg",
    f"hr@{K}_diff",
    f"ndcg@{K}_pos",
    f"ndcg@{K}_neg",
    f"ndcg@{K}_diff",
    f"map@{K}",
    f"skip_mrr@{K}",
    "coverage",
)
# The next-item metrics (and coverage) count users with a history before the cut-off only: a user
# without one is scored from nothing, the same for every user, and says nothing of a model. Those
# users are counted apart (next_users_cold).

# Every metric is a ratio of per-user sums: value = sum over users of `sums` / sum of `counts`.
# Resampling users then only re-weights those per-user terms, for one model or two at once.
DIFFERENCES = {
    f"hr@{K}_diff": (f"hr@{K}_pos", f"hr@{K}_neg"),
    f"ndcg@{K}_diff": (f"ndcg@{K}_pos", f"ndcg@{K}_neg"),
}


@dataclass
class UserTerms:
    """Per user (sorted ids), the sum and count of each metric's per-row values."""

    users: np.ndarray  # (U,)
    sums: dict[str, np.ndarray]  # metric -> (U,)
    counts: dict[str, np.ndarray]  # metric -> (U,)

    def point(self) -> dict[str, float]:
        """Each figure (and difference) once, every user weighing once."""
        return {name: float(v[0]) for name, v in self.values().items()}

    def values(self, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Each metric (and each difference of two) under user weights (S, U); None = each user once."""
        w = np.ones((1, len(self.users))) if weights is None else weights
        out: dict[str, np.ndarray] = {}
        with np.errstate(invalid="ignore", divide="ignore"):
            for name, sums in self.sums.items():
                out[name] = (w @ sums) / (w @ self.counts[name])
        for name, (a, b) in DIFFERENCES.items():
            if a in out and b in out:
                out[name] = out[a] - out[b]
        return out


def mean_terms(runs: list[UserTerms]) -> UserTerms:
    """The per-user terms of a model trained under several seeds: each user's sums and counts
    averaged over the runs, so every figure is the mean of the runs' figures (the tables, hence the
    counts, are the same) and a paired comparison resamples users of the seed-averaged model."""
    first = runs[0]
    for other in runs[1:]:
        if not np.array_equal(first.users, other.users):
            raise ValueError("the runs cover different users: score them on the same tables")
    return UserTerms(
        first.users,
        {k: np.mean([r.sums[k] for r in runs], axis=0) for k in first.sums},
        {k: np.mean([r.counts[k] for r in runs], axis=0) for k in first.counts},
    )


def pair_terms(predictions: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Rows (users, values) of the pair metrics: per-user paired accuracy and AUC, pooled outcomes."""
    users = predictions[USER_ID].to_numpy()
    up = predictions["up_score"].to_numpy()
    down = predictions["down_score"].to_numpy()
    outcomes = M.pair_outcomes(up, down)
    unique, per_user_accuracy = M.user_means(users, outcomes)
    both = np.concatenate([users, users])
    scores = np.concatenate([up, down])
    labels = np.concatenate([np.ones(len(up)), np.zeros(len(down))])
    order = np.argsort(both, kind="stable")
    bounds = (
        np.searchsorted(both[order], unique, side="left"),
        np.searchsorted(both[order], unique, side="right"),
    )
    aucs = np.array(
        [M.auc(scores[order[a:b]], labels[order[a:b]]) for a, b in zip(*bounds, strict=True)],
        dtype=np.float64,
    )
    defined = ~np.isnan(aucs)
    return {
        "paired_accuracy": (unique, per_user_accuracy),
        "paired_accuracy_pooled": (users, outcomes),
        "auc": (unique[defined], aucs[defined]),
    }


def pair_metrics(predictions: pd.DataFrame) -> dict[str, float]:
    """The pair metrics alone (paired_accuracy, paired_accuracy_pooled, auc) of scored pairs
    (user_id, up_score, down_score): for reference scorers that are not serving models."""
    values = user_terms(pair_terms(predictions)).values()
    return {name: float(values[name][0]) for name in ("paired_accuracy", "paired_accuracy_pooled", "auc")}


def next_item_terms(
    users: np.ndarray,
    feedback: np.ndarray,
    positive: np.ndarray,
    negative: np.ndarray,
    ranks: np.ndarray,
    served: np.ndarray,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each next-item figure's (user, value) terms, from the rank of every scored row's target."""
    hits, gains, reciprocal = (ranks <= K).astype(float), _gain(ranks), np.where(ranks <= K, 1.0 / ranks, 0.0)
    skipped = feedback == SKIP_ID
    return {
        f"hr@{K}_pos": (users[positive], hits[positive]),
        f"hr@{K}_neg": (users[negative], hits[negative]),
        f"ndcg@{K}_pos": (users[positive], gains[positive]),
        f"ndcg@{K}_neg": (users[negative], gains[negative]),
        **{f"hr@{k}_pos": (users[positive], (ranks <= k).astype(float)[positive]) for k in EXTRA_CUTOFFS},
        f"map@{K}": (users[positive], reciprocal[positive]),
        f"skip_mrr@{K}": (users[skipped], reciprocal[skipped]),
        "coverage": (users, served.astype(float)),
    }


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
    hold every pair user's pre-cut-off history, and each target's stored role).

    Keys: paired_accuracy (mean over users of their share of pairs won, UMAP'24),
    paired_accuracy_pooled (share of all pairs), auc (mean per-user AUC of up vs down scores),
    hr@10_pos/neg/diff, ndcg@10_pos/neg/diff, hr@1/5/20_pos, map@10 (positive targets), skip_mrr@10 (skipped
    targets, lower is better), coverage (share of scored users served), and counts. Next-item
    figures rank the whole catalog less each row's `exclude_track_ids`, over users with a history
    only (next_users_scored; the others are next_users_cold). With
    `bootstrap` > 0, `<metric>_ci_low/_ci_high` from resampling users.
    """
    predictions = pair_predictions(scorer, pairs, next_rows, chunk=chunk)
    warm = has_history(next_rows)
    scored_rows = next_rows[warm].reset_index(drop=True)
    ranks, served = next_item_ranks(scorer, scored_rows, n_tracks, chunk=max(1, min(chunk, 64)))
    next_users = scored_rows[USER_ID].to_numpy()
    feedback = scored_rows[FEEDBACK_ID].to_numpy()
    next_ranks = pd.DataFrame({USER_ID: next_users, FEEDBACK_ID: feedback, "rank": ranks, "served": served})
    positive = scored_rows[IS_POSITIVE].to_numpy(dtype=bool)  # roles stored by the build, not re-derived
    negative = scored_rows[IS_NEGATIVE].to_numpy(dtype=bool)
    rows = pair_terms(predictions) | next_item_terms(next_users, feedback, positive, negative, ranks, served)
    terms = user_terms(rows)
    metrics = {name: float(v[0]) for name, v in terms.values().items()}
    pair_users = predictions[USER_ID].to_numpy()
    metrics |= {
        "pairs": float(len(predictions)),
        "pair_users": float(len(np.unique(pair_users))),
        "next_users": float(len(next_rows)),
        "next_users_scored": float(len(scored_rows)),
        "next_users_cold": float(len(next_rows) - len(scored_rows)),
        "next_pos": float(positive.sum()),
        "next_neg": float(negative.sum()),
    }
    if bootstrap > 0:
        draws = terms.values(M.bootstrap_weights(len(terms.users), bootstrap, seed))
        for name, values in draws.items():
            metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = M.percentile_interval(values)
    return Evaluation(metrics, predictions, next_ranks, terms)


def user_terms(rows: dict[str, tuple[np.ndarray, np.ndarray]]) -> UserTerms:
    """UserTerms over every user that appears in any metric's rows."""
    universe = np.unique(np.concatenate([np.asarray(u, dtype=object) for u, _ in rows.values()]))
    sums, counts = {}, {}
    for name, (users, values) in rows.items():
        sums[name], counts[name] = M.per_user(np.asarray(users, dtype=object), values, universe)
    return UserTerms(universe, sums, counts)


@dataclass(frozen=True)
class Difference:
    a: float
    b: float
    diff: float
    diff_low: float
    diff_high: float


def compare(a: UserTerms, b: UserTerms, *, samples: int = 1000, seed: int = 0) -> dict[str, Difference]:
    """Every metric of two models scored on the same tables, and a paired 95% bootstrap interval of
    a - b: each resample draws users once and weighs both models' terms with the same draw."""
    if not np.array_equal(a.users, b.users):
        raise ValueError("the two evaluations cover different users: score both on the same tables")
    weights = M.bootstrap_weights(len(a.users), samples, seed)
    point_a, point_b = a.values(), b.values()
    draws_a, draws_b = a.values(weights), b.values(weights)
    out = {}
    for name in point_a:
        low, high = M.percentile_interval(draws_a[name] - draws_b[name])
        va, vb = float(point_a[name][0]), float(point_b[name][0])
        out[name] = Difference(va, vb, va - vb, low, high)
    return out


def has_history(next_rows: pd.DataFrame) -> np.ndarray:
    """(N,) bool: eval_next rows whose user played anything before the cut-off."""
    if not len(next_rows):
        return np.zeros(0, dtype=bool)
    if HISTORY_LENGTH in next_rows.columns:
        return next_rows[HISTORY_LENGTH].to_numpy() > 0
    return np.array([len(h) > 0 for h in next_rows[HISTORY_TRACKS]], dtype=bool)


def excluded_tracks(rows: pd.DataFrame) -> list[np.ndarray]:
    """Each row's tracks the ranking leaves out (`exclude_track_ids`; none for tables without it)."""
    if EXCLUDE_TRACK_IDS not in rows.columns:
        return [np.zeros(0, np.int64)] * len(rows)
    return [np.asarray(x if x is not None else [], dtype=np.int64) for x in rows[EXCLUDE_TRACK_IDS]]


def last_stations(rows: pd.DataFrame) -> np.ndarray:
    """(N,) the station of each row's last history play (0, padding, for an empty history). A
    masked model reads its query's station; the target's would tell it the target's station (for
    MovieLens, the film's genre)."""
    return np.array(
        [h[-1] if h is not None and len(h) else 0 for h in rows[HISTORY_STATIONS]], dtype=np.int64
    )


def next_item_ranks(
    scorer: Scorer, rows: pd.DataFrame, n_tracks: int, *, chunk: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(N,) rank of each eval_next row's target among every catalog track but the row's excluded
    ones (metrics.target_ranks: ties against the target, NaN last), and (N,) whether it was served.
    A row asks on the station of the user's last play before the target (`last_stations`), as
    `recommend` does: the target's own station is not known before the target is.

    Scored `chunk` rows at a time, so memory holds (chunk, n_tracks) scores, whatever N."""
    catalog = np.arange(1, n_tracks + 1, dtype=np.int64)
    targets = rows[TRACK_IDX].to_numpy(dtype=np.int64) - 1  # column of track idx i is i - 1
    excluded = excluded_tracks(rows)
    ranks = np.zeros(len(rows), dtype=np.int64)
    served = np.zeros(len(rows), dtype=bool)
    for start in range(0, len(rows), chunk):
        part = rows.iloc[start : start + chunk]
        request = pd.DataFrame(
            {
                HISTORY_TRACKS: part[HISTORY_TRACKS].to_numpy(),
                HISTORY_STATIONS: part[HISTORY_STATIONS].to_numpy(),
                HISTORY_FEEDBACK: part[HISTORY_FEEDBACK].to_numpy(),
                STATION: last_stations(part),
                CANDIDATES: [catalog] * len(part),
            }
        )
        scored = scorer(request)
        full = np.stack([np.asarray(x, dtype=np.float64) for x in scored[SCORES]])  # (chunk, n_tracks)
        for i, tracks in enumerate(excluded[start : start + len(part)]):
            inside = tracks[(tracks >= 1) & (tracks <= n_tracks)]
            full[i, inside - 1] = -np.inf
        ranks[start : start + len(part)] = M.target_ranks(full, targets[start : start + len(part)])
        served[start : start + len(part)] = scored[SERVED].to_numpy(dtype=bool)
    return ranks, served


def _gain(ranks: np.ndarray) -> np.ndarray:
    return np.where(ranks <= K, 1.0 / np.log2(ranks + 1.0), 0.0)


def _score(scorer: Scorer, request: pd.DataFrame, chunk: int) -> pd.DataFrame:
    if not len(request):
        return pd.DataFrame({SCORES: [], SERVED: np.zeros(0, bool)})
    parts = [
        scorer(request.iloc[i : i + chunk].reset_index(drop=True)) for i in range(0, len(request), chunk)
    ]
    return pd.concat(parts, ignore_index=True)


def eval_frames(tables: dict[str, Any]) -> tuple[Any, Any]:
    """gold/eval_pairs and gold/eval_next rows of these snapshots, as pandas frames."""
    from downbeat.models.data import read_frame

    return read_frame(tables[Tables.EVAL_PAIRS]), read_frame(tables[Tables.EVAL_NEXT])
