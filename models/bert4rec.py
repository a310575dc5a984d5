"""BERT4Rec (Sun et al.), the RecSys'24 baseline: the bidirectional network of the UMAP'24 hybrid,
trained by cloze masking of positives with a softmax over the catalog (`softmax: full`) or over
`sampled_negatives` uniform tracks, instead of one (hard) negative per masked position. It reads
every play, skips and downs included, and scores as the hybrid does (a masked query). Its settings
are config `model.bert4rec` (BERT4RecSettings)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from downbeat.models.hybrid import MaskedRecommender
from downbeat.models.losses import next_item_loss
from downbeat.models.negatives import cloze_mask
from downbeat.models.network import PAD, Batch
from downbeat.models.settings import SoftmaxSettings


@dataclass(frozen=True)
class BERT4RecSettings(SoftmaxSettings):
    """Config `model.bert4rec`: a share `p_task` of target positions masked per row (at least one)."""

    p_task: float = 0.15
    # as the hybrid's: whether a masked position carries its station (the target's) or none
    query_station: bool = True


class BERT4Rec(MaskedRecommender[BERT4RecSettings]):
    """Cloze over positives; stored hard negatives are never read."""

    name = "bert4rec"
    objective = "cloze over positives with a next-item softmax; hard negatives never read"

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        t = self.settings
        masked = cloze_mask(batch.targets, t.p_task, generator)  # (B, L)
        inputs = torch.where(masked, self.network.mask_id, batch.tracks)
        stations = batch.stations if t.query_station else batch.stations.masked_fill(masked, PAD)
        h = self.network.hidden(inputs, stations, batch.feedback)[masked]  # (N, D)
        sampled = self.softmax_negatives(t, generator, inputs.device)
        loss = next_item_loss(h, batch.tracks[masked], self.network.item_embeddings(), sampled)
        return loss, {"masked": float(masked.sum()), "softmax": float(loss.detach())}
