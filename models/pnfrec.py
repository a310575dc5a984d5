"""PNFRec (Ivanova, Frolov, Vasilev, RecSys'25): two causal transformers, one over a user's positive
sub-sequence and one over their negative one (skips and downs), sharing the track embeddings.

loss = CE_pos (the positive encoder predicts the next positive)
     + alpha * CE_neg (the negative encoder predicts the next negative)
     + beta * contrastive (the next positive against the row's negatives, from the positive
       encoder's state: the rejected tracks must score below the track the user went on to like).
CE is a softmax over the catalog (`softmax: full`) or over `sampled_negatives` uniform tracks. The
settings are config `model.pnfrec` (PNFRecSettings).

Scoring reads the positive encoder after the user's positive history; the negative encoder shapes
the shared embeddings in training. A user with no positive history is not covered.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from downbeat.models.losses import info_nce_loss, next_item_loss
from downbeat.models.network import DOWN, PAD, SKIP, Batch, History, SequenceNetwork, compact, without_last
from downbeat.models.sasrec import CausalRecommender
from downbeat.models.settings import NetworkSettings, SoftmaxSettings


@dataclass(frozen=True)
class PNFRecSettings(SoftmaxSettings):
    """Config `model.pnfrec`: CE_pos + alpha * CE_neg + beta * contrastive."""

    alpha: float = 0.5  # weight of the negative encoder's next-negative loss
    beta: float = 0.5  # weight of the next positive contrasted with the row's negatives


def next_in_row(tracks: Tensor) -> tuple[Tensor, Tensor]:
    """Of left-aligned (B, L) rows: (B, L) bool, positions followed by a real item, and (B, L) that item."""
    following = torch.cat([tracks[:, 1:], torch.zeros_like(tracks[:, :1])], dim=1)
    return (tracks != PAD) & (following != PAD), following


class PNFRec(CausalRecommender[PNFRecSettings]):
    """Positive and negative encoders over one set of track embeddings."""

    name = "pnfrec"
    objective = (
        "positive and negative encoders over one set of track embeddings (next-item losses and a "
        "contrast of the next positive with the negatives)"
    )
    learns_feedback_embeddings = False  # each encoder reads some feedback types only

    def __init__(
        self,
        n_tracks: int,
        n_stations: int,
        network_settings: NetworkSettings,
        settings: PNFRecSettings,
        positive_feedback: tuple[int, ...],
    ) -> None:
        super().__init__(n_tracks, n_stations, network_settings, settings, positive_feedback)
        self.negative_network = SequenceNetwork(n_tracks, n_stations, network_settings, causal=True)
        self.negative_network.track = self.network.track  # shared track (item) embeddings

    def is_positive(self, feedback: Tensor) -> Tensor:
        return torch.isin(feedback, torch.tensor(self.positive_feedback, device=feedback.device))

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        t = self.settings
        present = batch.tracks != PAD
        width = batch.tracks.shape[1]
        columns = (batch.tracks, batch.stations, batch.feedback)
        positive = compact(batch.targets & present, width, *columns)  # left-aligned sub-sequences
        rejected = present & ((batch.feedback == SKIP) | (batch.feedback == DOWN))
        negative = compact(rejected, width, *columns)
        items = self.network.item_embeddings()
        sampled = self.softmax_negatives(t, generator, batch.tracks.device)
        # each encoder reads its sub-sequence but its last item, which is a target only: the slot
        # after the most recent input, which scoring reads, is trained (network.without_last)
        h_pos = self.network.hidden(without_last(positive[0]), *positive[1:])  # (B, L, D)
        h_neg = self.negative_network.hidden(without_last(negative[0]), *negative[1:])
        pos_valid, next_pos = next_in_row(positive[0])
        neg_valid, next_neg = next_in_row(negative[0])
        ce_pos = next_item_loss(h_pos[pos_valid], next_pos[pos_valid], items, sampled)
        ce_neg = next_item_loss(h_neg[neg_valid], next_neg[neg_valid], items, sampled)
        # Each positive position: the next positive against every negative of its row.
        anchors = h_pos[pos_valid]  # (N, D)
        toward = (anchors * items[next_pos[pos_valid]]).sum(-1)  # (N,)
        row_negatives = negative[0].unsqueeze(1).expand(-1, width, -1)[pos_valid]  # (N, L) ids
        away = (h_pos @ items[negative[0]].transpose(1, 2))[pos_valid]  # (N, L): one (B, L, L) product
        counted = (row_negatives != PAD) & (row_negatives != next_pos[pos_valid].unsqueeze(1))
        contrast = info_nce_loss(toward, away, counted)
        loss = ce_pos + t.alpha * ce_neg + t.beta * contrast
        figures = {"ce_pos": float(ce_pos.detach()), "ce_neg": float(ce_neg.detach())}
        return loss, figures | {"contrastive": float(contrast.detach())}

    def inputs_of(self, history: History) -> Tensor:
        return (history.tracks != PAD) & self.is_positive(history.feedback)
