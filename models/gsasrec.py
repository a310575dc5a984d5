"""gSASRec (Petrov & Macdonald, RecSys'23): SASRec's causal network trained with generalised BCE
over many uniform negatives, whose calibration t undoes the overconfidence negative sampling
teaches; optionally with the not-to-recommend loss of Wang et al. (RecSys'23) on explicit
negatives: where the track right after a position was rated down, that position's score of it is
pushed toward probability 0.

Scoring is SASRec's: the hidden state of the user's last play against every track. Its settings
are config `model.gsasrec` (GSASRecSettings).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from downbeat.models.losses import gbce_beta, gbce_loss, not_to_recommend_loss, per_row_scores
from downbeat.models.network import DOWN, PAD, Batch
from downbeat.models.sasrec import CausalRecommender


@dataclass(frozen=True)
class GSASRecSettings:
    """Config `model.gsasrec`: gBCE over `sampled_negatives` uniform tracks per position."""

    sampled_negatives: int = 1000
    gbce_t: float = 0.75  # gBCE calibration (0 plain BCE, 1 calibrated to the sampling rate)
    not_to_recommend: float = 0.0  # weight of -log(1 - sigmoid(score)) on downs (0 = off)


def next_is_down(tracks: Tensor, feedback: Tensor) -> tuple[Tensor, Tensor]:
    """(B, L) bool: real positions whose next real item was rated down, and (B, L) that item's id.

    Rows hold no padding between real items (either side of the row is fine).
    """
    following_tracks = torch.cat([tracks[:, 1:], torch.zeros_like(tracks[:, :1])], dim=1)
    following_feedback = torch.cat([feedback[:, 1:], torch.zeros_like(feedback[:, :1])], dim=1)
    rejected = (tracks != PAD) & (following_tracks != PAD) & (following_feedback == DOWN)
    return rejected, following_tracks


class GSASRec(CausalRecommender[GSASRecSettings]):
    """SASRec with gBCE (and, with `not_to_recommend` > 0, the not-to-recommend loss on downs)."""

    name = "gsasrec"
    objective = "causal, gBCE over sampled negatives, optionally not-to-recommend on downs"

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        t = self.settings
        step = self.next_positive(batch)
        items = self.network.item_embeddings()
        count = t.sampled_negatives
        hidden = step.hidden[step.valid]  # (N, D): the positions that have a next positive
        positives = step.positives[step.valid]  # (N,)
        # Each position draws its own uniform negatives, as the reference does: one set for the
        # whole batch left most tracks without a gradient in most steps, and one set a row still
        # held gBCE in its first phase (every score at the calibrated floor) on the ML-1M part.
        sampled = self.sampled_tracks(count, generator, batch.tracks.device, positives.shape[0])  # (N, S)
        positive_scores = (hidden * items[positives]).sum(-1)  # (N,)
        negative_scores = per_row_scores(hidden, items, sampled)  # (N, S)
        collide = sampled == positives.unsqueeze(1)  # (N, S)
        beta = gbce_beta(count, self.n_tracks, t.gbce_t)
        gbce = gbce_loss(positive_scores, negative_scores, beta, collide)
        figures = {"gbce": float(gbce.detach()), "gbce_beta": beta}
        if t.not_to_recommend <= 0:
            return gbce, figures
        rejected, following = next_is_down(batch.tracks, batch.feedback)
        rejected_scores = (step.hidden[rejected] * items[following[rejected]]).sum(-1)  # (M,)
        ntr = not_to_recommend_loss(rejected_scores)
        figures["not_to_recommend"] = float(ntr.detach())
        return gbce + t.not_to_recommend * ntr, figures
