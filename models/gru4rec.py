"""GRU4Rec (Hidasi et al.), the RecSys'24 baseline: a GRU over the same inputs as SASRec (track +
station + feedback, skips and downs included) predicts the next positive at every position, with a
softmax over the catalog (`train.softmax: full`) or over `sampled_negatives` uniform tracks."""

from __future__ import annotations

import torch
from torch import Tensor

from downbeat.models.losses import next_item_loss
from downbeat.models.network import Batch, GRUNetwork
from downbeat.models.sasrec import SASRec
from downbeat.models.settings import ModelSettings, TrainSettings


class GRU4Rec(SASRec):
    """Causal like SASRec (and scored the same way: the state after the user's last play)."""

    name = "gru4rec"

    def __init__(
        self,
        n_tracks: int,
        n_stations: int,
        settings: ModelSettings,
        train: TrainSettings,
        positive_feedback: tuple[int, ...],
    ) -> None:
        network = GRUNetwork(n_tracks, n_stations, settings)
        super().__init__(n_tracks, n_stations, settings, train, positive_feedback, network)

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        step = self.next_positive(batch)
        sampled = self.softmax_negatives(generator, batch.tracks.device)
        loss = next_item_loss(
            step.hidden[step.valid], step.positives[step.valid], self.network.item_embeddings(), sampled
        )
        return loss, {"softmax": float(loss.detach())}
