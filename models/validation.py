"""Validation: the figures early stopping, the best epoch and the champion gate read.

Built like the test figures, on an earlier target (and, under the temporal split, other users):
gold/validation_pairs holds the validation targets' (positive, negative) event pairs and
gold/validation_next each validation user's next target with the history before it. Two figures,
each a mean over users with its standard error: `paired_accuracy` (UMAP'24) and `ndcg@10_pos`
(the next positive ranked among the whole catalog less the user's excluded tracks, users with a
history only). Each model selects on its own task's figure (`selection_metric`). Test tables
never reach this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from downbeat.models.contract import IS_POSITIVE, USER_ID
from downbeat.models.data import TableSnapshot, read_frame
from downbeat.models.evaluation import K, Scorer, has_history, next_item_ranks, pair_predictions
from downbeat.models.metrics import pair_outcomes, user_means
from downbeat.models.network import Recommender
from downbeat.models.serving import score_frame
from downbeat.models.train import NDCG, PAIRED_ACCURACY, Ranks

FIGURES = (PAIRED_ACCURACY, NDCG)


@dataclass(frozen=True)
class Figure:
    """A validation figure: the mean over users, its standard error across users, how many users."""

    value: float
    standard_error: float
    users: int


NO_FIGURE = Figure(float("nan"), float("nan"), 0)
ONE_PROCESS = Ranks()
PerUser = dict[str, tuple[np.ndarray, np.ndarray]]  # figure -> (users, each user's value)


@dataclass(frozen=True)
class Score:
    """Every validation figure of one model."""

    figures: dict[str, Figure]

    def __getitem__(self, figure: str) -> Figure:
        return self.figures.get(figure, NO_FIGURE)


@dataclass
class ValidationSet:
    """gold/validation_pairs rows and the gold/validation_next rows (targets and histories)."""

    pairs: pd.DataFrame
    histories: pd.DataFrame
    n_tracks: int

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def users(self) -> int:
        """Users with a pair or a scored next target."""
        return len(self._users())

    @classmethod
    def of(cls, pairs: TableSnapshot, histories: TableSnapshot, n_tracks: int) -> ValidationSet:
        """From the gold/validation_pairs and gold/validation_next snapshots."""
        return cls(read_frame(pairs), read_frame(histories), n_tracks)

    def _users(self) -> np.ndarray:
        pair_users = self.pairs[USER_ID].to_numpy() if len(self.pairs) else np.zeros(0, object)
        next_users = self._next_rows()[USER_ID].to_numpy() if len(self.histories) else np.zeros(0, object)
        return np.unique(np.concatenate([pair_users, next_users]).astype(object))

    def _next_rows(self) -> pd.DataFrame:
        """The validation_next rows ranked: positive targets of users with a history."""
        rows = self.histories
        if not len(rows):
            return rows
        keep = has_history(rows) & rows[IS_POSITIVE].to_numpy(dtype=bool)
        return rows[keep].reset_index(drop=True)

    def per_user(self, scorer: Scorer, *, ranks: Ranks = ONE_PROCESS, chunk: int = 256) -> PerUser:
        """Each figure's per-user values over this rank's share of the users."""
        users = self._users()
        mine = set(users[ranks.rank :: ranks.world])
        out: PerUser = {}
        if len(self.pairs):
            pairs = self.pairs[self.pairs[USER_ID].isin(mine)].reset_index(drop=True)
            if len(pairs):
                scored = pair_predictions(scorer, pairs, self.histories, chunk=chunk)
                won = pair_outcomes(scored["up_score"].to_numpy(), scored["down_score"].to_numpy())
                out[PAIRED_ACCURACY] = user_means(scored[USER_ID].to_numpy(), won)
        rows = self._next_rows()
        if len(rows):
            rows = rows[rows[USER_ID].isin(mine)].reset_index(drop=True)
        if len(rows):
            target_ranks, _ = next_item_ranks(scorer, rows, self.n_tracks, chunk=max(1, min(chunk, 64)))
            gains = np.where(target_ranks <= K, 1.0 / np.log2(target_ranks + 1.0), 0.0)
            out[NDCG] = user_means(rows[USER_ID].to_numpy(), gains)
        return out

    def score(
        self, model: Recommender, *, device: torch.device, ranks: Ranks = ONE_PROCESS, batch_size: int = 256
    ) -> Score:
        """Every figure of a model in this process: each rank scores its share of the users."""
        return self.score_with(_scorer(model, device, batch_size), ranks=ranks, chunk=batch_size)

    def score_with(self, scorer: Scorer, *, ranks: Ranks = ONE_PROCESS, chunk: int = 256) -> Score:
        """Every figure of any scorer (a model in process, an MLflow pyfunc's predict)."""
        values = self.per_user(scorer, ranks=ranks, chunk=chunk)
        sums: list[float] = []
        for figure in FIGURES:
            per_user = values.get(figure, (None, np.zeros(0)))[1]
            sums += [float(per_user.sum()), float((per_user**2).sum()), float(len(per_user))]
        sums = ranks.all_sum(sums)
        figures = {}
        for i, figure in enumerate(FIGURES):
            total, squares, count = sums[3 * i : 3 * i + 3]
            figures[figure] = mean_and_error(total, squares, count)
        return Score(figures)


def mean_and_error(total: float, squares: float, count: float) -> Figure:
    """The mean of `count` values from their sum and sum of squares, with its standard error."""
    if count == 0:
        return NO_FIGURE
    mean = total / count
    variance = max(squares / count - mean**2, 0.0) * count / max(count - 1, 1)
    return Figure(mean, math.sqrt(variance / count), int(count))


def _scorer(model: Recommender, device: torch.device, batch_size: int) -> Scorer:
    return lambda frame: score_frame(model, frame, batch_size=batch_size, device=str(device))
