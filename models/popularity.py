"""Popularity: every track scored by how often it was a positive in the training rows, the same for
every user. The floor every comparison shows beside its models: a model that does not beat it on
the same targets has learnt nothing a count could not give.

It is fit by counting, in one pass over gold/training_sequences (models/worker.py count_worker),
not by gradient steps; it is registered, logged and scored like any other model.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor

from downbeat.models.network import PAD, Batch, History, InputNetwork, Recommender
from downbeat.models.settings import NetworkSettings


class Popularity(Recommender[None]):
    """Scores are counts of positive training plays; ties keep the catalog's order (lower idx)."""

    name = "popularity"
    objective = "no learning: each track's count of positive plays in the training rows (the floor)"
    learns_feedback_embeddings = False
    learns_by_gradient = False

    def __init__(
        self,
        n_tracks: int,
        n_stations: int,
        network_settings: NetworkSettings,
        settings: None,
        positive_feedback: tuple[int, ...],
    ) -> None:
        """settings: none (popularity has no knobs)."""
        # A network of width 1 carries the sizes the serving code reads; its weights score nothing.
        network = InputNetwork(n_tracks, n_stations, dataclasses.replace(network_settings, dim=1))
        network.requires_grad_(False)
        super().__init__(network, settings, positive_feedback)
        self.counts: Tensor
        self.register_buffer("counts", torch.zeros(n_tracks + 1, dtype=torch.float64))

    def count(self, tracks: np.ndarray, targets: np.ndarray) -> None:
        """Add the positives of training rows: (rows, width) track ids and target flags."""
        positives = tracks[targets.astype(bool) & (tracks != PAD)].astype(np.int64)
        added = np.bincount(positives, minlength=self.n_tracks + 1)[: self.n_tracks + 1]
        self.counts += torch.from_numpy(added.astype(np.float64))

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        raise RuntimeError("popularity is fit by counting (models/worker.py count_worker), not by steps")

    def can_serve(self, history: History) -> Tensor:
        return torch.ones(history.tracks.shape[0], dtype=torch.bool, device=history.tracks.device)

    def score(self, history: History, candidates: Tensor) -> Tensor:
        return self.counts.to(candidates.device)[candidates].float()  # (B, C)

    def score_all(self, history: History) -> Tensor:
        scores = self.counts.float().to(history.tracks.device).expand(history.tracks.shape[0], -1).clone()
        scores[:, PAD] = float("-inf")
        return scores  # (B, n_tracks + 1)
