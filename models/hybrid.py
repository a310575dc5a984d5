"""The UMAP'24 hybrid: a bidirectional transformer trained by cloze masking against one negative
per masked position (a stored hard negative with probability p_hard, else random). With
`positives_only` and p_hard = 0 the same network is the paper's baseline."""

from __future__ import annotations

import torch
from torch import Tensor

from models.losses import bce_pair_loss
from models.negatives import cloze_mask, hard_or_random, hardest, hidden_positions, random_negatives
from models.network import PAD, UP, Batch, History, Recommender, SequenceNetwork, compact
from models.settings import ModelSettings, TrainSettings


class Hybrid(Recommender):
    """Bidirectional cloze model. Scores a track as the masked item after the user's history."""

    def __init__(
        self,
        n_tracks: int,
        n_stations: int,
        settings: ModelSettings,
        train: TrainSettings,
        positive_feedback: tuple[int, ...],
        *,
        positives_only: bool,
    ) -> None:
        super().__init__(
            SequenceNetwork(n_tracks, n_stations, settings, causal=False), train, positive_feedback
        )
        self.positives_only = positives_only
        self.name = "baseline" if positives_only else "hybrid"

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        t = self.train_settings
        tracks, stations, feedback, targets, stored = (
            batch.tracks,
            batch.stations,
            batch.feedback,
            batch.targets,
            batch.negatives,
        )
        if self.positives_only:  # the baseline reads positives only
            tracks, stations, feedback, target_ids, stored = compact(
                targets, tracks.shape[1], tracks, stations, feedback, targets.long(), stored
            )
            targets = target_ids.bool()
        masked = cloze_mask(targets, t.p_task, generator)  # (B, L)
        positives = tracks[masked]  # (N,)
        hidden_inputs = torch.zeros_like(masked)
        hard_share = 0.0
        negatives: Tensor | None = None
        if t.negative_mode == "stored":
            p_hard = 0.0 if self.positives_only else t.p_hard
            negatives, used_hard = hard_or_random(positives, stored[masked], p_hard, self.n_tracks, generator)
            hidden_inputs = hidden_positions(tracks, masked, negatives, used_hard)
            hard_share = float(used_hard.float().mean()) if used_hard.numel() else 0.0
        inputs = torch.where(masked, self.network.mask_id, tracks)
        inputs = inputs.masked_fill(hidden_inputs, PAD)
        h = self.network.hidden(
            inputs, stations.masked_fill(hidden_inputs, PAD), feedback.masked_fill(hidden_inputs, PAD)
        )[masked]  # (N, D)
        items = self.network.item_embeddings()
        if negatives is None:  # hardest of k random tracks, by the current model's own scores
            candidates = random_negatives(positives, self.n_tracks, generator, t.k)  # (N, k)
            with torch.no_grad():
                scores = torch.einsum("nd,nkd->nk", h, items[candidates])
            negatives = hardest(candidates, scores)
        positive_scores = (h * items[positives]).sum(-1)  # (N,)
        negative_scores = (h * items[negatives]).sum(-1)  # (N,)
        loss = bce_pair_loss(positive_scores, negative_scores)
        return loss, {"masked": float(masked.sum()), "hard_share": hard_share}

    def inputs_of(self, history: History) -> Tensor:
        present = history.tracks != PAD
        if not self.positives_only:
            return present
        positive = torch.isin(history.feedback, torch.tensor(self.positive_feedback, device=present.device))
        return present & positive

    def user_vectors(self, history: History) -> Tensor:
        keep = self.inputs_of(history)  # (B, L)
        count = keep.sum(dim=1)  # (B,)
        width = int(min(self.network.settings.max_length - 1, int(count.max()) if count.numel() else 0))
        tracks, stations, feedback = compact(
            keep, max(width, 1), history.tracks, history.stations, history.feedback
        )
        count = count.clamp(max=width)
        pad = torch.zeros_like(tracks[:, :1])
        tracks, stations, feedback = (torch.cat([c, pad], dim=1) for c in (tracks, stations, feedback))
        rows = torch.arange(tracks.shape[0], device=tracks.device)
        tracks[rows, count] = self.network.mask_id  # the query: a masked up on the query station
        stations[rows, count] = history.query_station
        feedback[rows, count] = UP
        return self.network.hidden(tracks, stations, feedback)[rows, count]  # (B, D)
