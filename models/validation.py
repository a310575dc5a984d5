"""Validation: the paired accuracy that early stopping, the best epoch and the champion gate use.

Built like the test figure, on other users and an earlier period: gold/validation_pairs holds the
validation users' (positive, negative) event pairs after the validation cut-off, and
gold/validation_next their histories before it. Test tables never reach this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from contract import USER_ID
from models.data import TableSnapshot, read_frame
from models.evaluation import Scorer, pair_predictions
from models.metrics import pair_outcomes, user_means
from models.network import Recommender
from models.serving import score_frame
from models.train import Ranks


@dataclass(frozen=True)
class Score:
    """Validation paired accuracy (mean over users) and its standard error across users."""

    accuracy: float
    standard_error: float
    users: int

    @property
    def pair(self) -> tuple[float, float]:
        return self.accuracy, self.standard_error


ONE_PROCESS = Ranks()
NO_SCORE = Score(float("nan"), float("nan"), 0)


@dataclass
class ValidationSet:
    """gold/validation_pairs rows and the gold/validation_next rows holding their users' histories."""

    pairs: pd.DataFrame
    histories: pd.DataFrame

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def users(self) -> int:
        return int(self.pairs[USER_ID].nunique()) if len(self.pairs) else 0

    @classmethod
    def of(cls, pairs: TableSnapshot, histories: TableSnapshot) -> ValidationSet:
        """From the gold/validation_pairs and gold/validation_next snapshots."""
        return cls(read_frame(pairs), read_frame(histories))

    def score(
        self, model: Recommender, *, device: torch.device, ranks: Ranks = ONE_PROCESS, batch_size: int = 256
    ) -> Score:
        """Paired accuracy of a model in this process: each rank scores its share of the users."""
        return self.score_with(_scorer(model, device, batch_size), ranks=ranks, chunk=batch_size)

    def score_with(self, scorer: Scorer, *, ranks: Ranks = ONE_PROCESS, chunk: int = 256) -> Score:
        """Paired accuracy of any scorer (a model in process, an MLflow pyfunc's predict)."""
        if not len(self.pairs):
            return NO_SCORE
        users = np.unique(self.pairs[USER_ID].to_numpy())
        mine = self.pairs[self.pairs[USER_ID].isin(users[ranks.rank :: ranks.world])]
        total, squares, count = 0.0, 0.0, 0.0
        if len(mine):
            scored = pair_predictions(scorer, mine.reset_index(drop=True), self.histories, chunk=chunk)
            won = pair_outcomes(scored["up_score"].to_numpy(), scored["down_score"].to_numpy())
            _, per_user = user_means(scored[USER_ID].to_numpy(), won)
            total, squares, count = float(per_user.sum()), float((per_user**2).sum()), float(len(per_user))
        total, squares, count = ranks.all_sum([total, squares, count])
        if count == 0:
            return NO_SCORE
        mean = total / count
        variance = max(squares / count - mean**2, 0.0) * count / max(count - 1, 1)
        return Score(mean, math.sqrt(variance / count), int(count))


def _scorer(model: Recommender, device: torch.device, batch_size: int) -> Scorer:
    return lambda frame: score_frame(model, frame, batch_size=batch_size, device=str(device))
