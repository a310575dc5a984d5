"""Caser (Tang & Wang, WSDM'18), a RecSys'24 baseline: the last `window` items before a position,
stacked as a (window, dim) image, read by horizontal convolutions (filters of every height 1..window
across the whole embedding, max-pooled over where they sit: union-level and point-level sequential
patterns) and vertical ones (weighted sums of the window's rows), then a fully connected layer.
It predicts the next positive at every position with sasrec's loss (a softmax over the catalog or
over `sampled_negatives` tracks; RecSys'24's InfoNCE beside it when beta > 0), and is scored like
every causal model here: from the state after the user's last play. The paper's user embedding is
left out: downbeat scores users it never trained on. Its settings are config `model.caser`
(CaserSettings)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from downbeat.models.network import Batch, InputNetwork, real_first, reordered
from downbeat.models.sasrec import CausalRecommender, SkipAwareSettings, skip_aware_loss
from downbeat.models.settings import NetworkSettings


@dataclass(frozen=True)
class CaserSettings(SkipAwareSettings):
    """Config `model.caser`: the window L the convolutions read, and their filter counts (the
    paper's ML-1M setting: L 5, 16 horizontal filters of each height, 4 vertical); the loss is
    sasrec's (RecSys'24's InfoNCE when beta > 0)."""

    window: int = 5
    horizontal: int = 16
    vertical: int = 4


class CaserNetwork(InputNetwork):
    """The inputs (track + station + feedback) of the `window` real items up to each position,
    through Caser's convolutions: (B, L, D) states, each reading only its own window."""

    causal = True

    def __init__(
        self, n_tracks: int, n_stations: int, settings: NetworkSettings, caser: CaserSettings
    ) -> None:
        super().__init__(n_tracks, n_stations, settings)
        d, window = settings.dim, caser.window
        self.window = window
        self.horizontal = nn.ModuleList(nn.Conv2d(1, caser.horizontal, (h, d)) for h in range(1, window + 1))
        self.vertical = nn.Conv2d(1, caser.vertical, (window, 1))
        self.fc = nn.Linear(caser.horizontal * window + caser.vertical * d, d)
        self.initialise()

    def hidden(self, tracks: Tensor, stations: Tensor, feedback: Tensor) -> Tensor:
        b, length = tracks.shape
        d, window = self.settings.dim, self.window
        # real items first (either padding side), as the GRU reads them; states put back after
        order = real_first(tracks)
        x = self.dropout(reordered(self.embedded(tracks, stations, feedback), order))
        # each position's window: the `window` items up to and including it, zeros before the first
        padded = F.pad(x, (0, 0, window - 1, 0))  # (B, L + window - 1, D)
        windows = padded.unfold(1, window, 1).permute(0, 1, 3, 2)  # (B, L, window, D)
        images = windows.reshape(b * length, 1, window, d)
        pooled = [F.relu(conv(images)).squeeze(3).amax(dim=2) for conv in self.horizontal]  # (BL, n_h) each
        vertical = self.vertical(images).reshape(b * length, -1)  # (BL, n_v * D)
        z = F.relu(self.fc(self.dropout(torch.cat([*pooled, vertical], dim=1))))  # (BL, D)
        return reordered(self.norm(z.reshape(b, length, d)), order.argsort(dim=1))


class Caser(CausalRecommender[CaserSettings]):
    """Causal like SASRec (and scored the same way: the state after the user's last play)."""

    name = "caser"
    objective = "convolutions over the last L items, next-item softmax"

    def __init__(
        self,
        n_tracks: int,
        n_stations: int,
        network_settings: NetworkSettings,
        settings: CaserSettings,
        positive_feedback: tuple[int, ...],
    ) -> None:
        network = CaserNetwork(n_tracks, n_stations, network_settings, settings)
        super().__init__(n_tracks, n_stations, network_settings, settings, positive_feedback, network)

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        return skip_aware_loss(self, batch, generator, self.settings)
