"""GRU4Rec (Hidasi et al.), the RecSys'24 baseline: a GRU over the same inputs as SASRec (track +
station + feedback, skips and downs included) predicts the next positive at every position, with a
softmax over the catalog (`softmax: full`) or over `sampled_negatives` uniform tracks, and with
`beta` > 0 RecSys'24's InfoNCE away from the tracks passed over (sasrec's loss). Its settings are
config `model.gru4rec` (GRU4RecSettings)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from downbeat.models.network import Batch, GRUNetwork
from downbeat.models.sasrec import CausalRecommender, SkipAwareSettings, skip_aware_loss
from downbeat.models.settings import NetworkSettings


@dataclass(frozen=True)
class GRU4RecSettings(SkipAwareSettings):
    """Config `model.gru4rec`: the next-item softmax, and RecSys'24's InfoNCE when beta > 0."""


class GRU4Rec(CausalRecommender[GRU4RecSettings]):
    """Causal like SASRec (and scored the same way: the state after the user's last play)."""

    name = "gru4rec"
    objective = "GRU next-item softmax"

    def __init__(
        self,
        n_tracks: int,
        n_stations: int,
        network_settings: NetworkSettings,
        settings: GRU4RecSettings,
        positive_feedback: tuple[int, ...],
    ) -> None:
        network = GRUNetwork(n_tracks, n_stations, network_settings)
        super().__init__(n_tracks, n_stations, network_settings, settings, positive_feedback, network)

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        return skip_aware_loss(self, batch, generator, self.settings)
