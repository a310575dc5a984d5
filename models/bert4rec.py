"""BERT4Rec (Sun et al.), the RecSys'24 baseline: the bidirectional network of the UMAP'24 hybrid,
trained by cloze masking of positives with a softmax over the catalog (`train.softmax: full`) or
over `sampled_negatives` uniform tracks, instead of one (hard) negative per masked position. It
reads every play, skips and downs included, and scores as the hybrid does (a masked query)."""

from __future__ import annotations

import torch
from torch import Tensor

from downbeat.models.hybrid import Hybrid
from downbeat.models.losses import next_item_loss
from downbeat.models.negatives import cloze_mask
from downbeat.models.network import Batch
from downbeat.models.settings import ModelSettings, TrainSettings


class BERT4Rec(Hybrid):
    """Cloze over positives; stored hard negatives are never read."""

    selection_metric = "ndcg@10_pos"  # a next-item model, whatever network it shares with the hybrid

    def __init__(
        self,
        n_tracks: int,
        n_stations: int,
        settings: ModelSettings,
        train: TrainSettings,
        positive_feedback: tuple[int, ...],
    ) -> None:
        super().__init__(n_tracks, n_stations, settings, train, positive_feedback, positives_only=False)
        self.name = "bert4rec"

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        t = self.train_settings
        masked = cloze_mask(batch.targets, t.p_task, generator)  # (B, L)
        inputs = torch.where(masked, self.network.mask_id, batch.tracks)
        h = self.network.hidden(inputs, batch.stations, batch.feedback)[masked]  # (N, D)
        sampled = self.softmax_negatives(generator, inputs.device)
        loss = next_item_loss(h, batch.tracks[masked], self.network.item_embeddings(), sampled)
        return loss, {"masked": float(masked.sum()), "softmax": float(loss.detach())}
