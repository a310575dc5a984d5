"""The UMAP'24 hybrid: a bidirectional transformer trained by cloze masking against one negative
per masked position (a stored hard negative with probability p_hard, else random). With
`positives_only` and p_hard = 0 the same network is the paper's baseline. The settings of both are
config `model.hybrid` (HybridSettings). `MaskedRecommender` is what the bidirectional models share
(bert4rec too): the network and scoring as the masked item after the user's history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

import torch
from torch import Tensor

from downbeat.models.losses import bce_pair_loss, next_item_loss
from downbeat.models.negatives import cloze_mask, hard_or_random, hardest, hidden_positions, random_negatives
from downbeat.models.network import (
    PAD,
    Batch,
    History,
    Recommender,
    SequenceNetwork,
    compact,
    query_feedback,
)
from downbeat.models.settings import NetworkSettings, SoftmaxSettings


@dataclass(frozen=True)
class HybridSettings(SoftmaxSettings):
    """Config `model.hybrid` (baseline and hybrid): a share `p_task` of target positions is masked;
    each masked position gets one negative, the stored hard negative with probability `p_hard`, else
    a random track (the baseline: always random); `negative_mode: hardest_of_k` instead scores `k`
    random tracks and keeps the highest-scoring one.

    `catalog_weight` > 0 adds a next-item softmax of each masked positive among the catalog
    (`softmax: full`) or `sampled_negatives` uniform tracks, weighted against the pairwise term.
    The pairwise term alone (UMAP'24's loss, weight 0) teaches a model to order a user's tracks of
    one station, never to rank the catalog, which is what `recommend` asks of a champion. The
    baseline gets the same term: it stays the hybrid without rejection."""

    p_task: float = 0.15
    p_hard: float = 1.0
    negative_mode: Literal["stored", "hardest_of_k"] = "stored"
    k: int = 100
    catalog_weight: float = 0.0
    softmax: Literal["sampled", "full"] = "full"
    # Whether a masked position carries its station (the target's in training, the request's when
    # scoring) or none. A next-item request asks on the station of the user's last play, which the
    # next play may leave; a model trained on the target's own station leans on it.
    query_station: bool = True


@dataclass
class ClozeInputs:
    """One training step's inputs: masked targets, their negatives, hard negatives removed."""

    tracks: Tensor  # (B, L) mask token at masked positions, 0 where a hard negative was removed
    stations: Tensor  # (B, L)
    feedback: Tensor  # (B, L)
    masked: Tensor  # (B, L) bool
    positives: Tensor  # (N,) the masked tracks, row-major
    negatives: Tensor | None  # (N,) or None when they are chosen by score (hardest of k)
    used_hard: Tensor  # (N,) bool, the negative is the stored hard one


OBJECTIVES = {
    "baseline": "cloze over positives only, each masked positive against one random track (BCE), "
    "with a next-item softmax beside it when catalog_weight > 0",
    "hybrid": "cloze, each masked positive against one negative (BCE): a stored hard negative or a "
    "random track (UMAP'24), with a next-item softmax beside it when catalog_weight > 0",
}


class MaskedSettings(Protocol):
    """What the bidirectional models' settings share (HybridSettings, BERT4RecSettings)."""

    @property
    def query_station(self) -> bool: ...


M = TypeVar("M", bound=MaskedSettings)


class MaskedRecommender(Recommender[M]):
    """Bidirectional cloze model. Scores a track as the masked item after the user's history."""

    def __init__(
        self,
        n_tracks: int,
        n_stations: int,
        network_settings: NetworkSettings,
        settings: M,
        positive_feedback: tuple[int, ...],
        *,
        positives_only: bool = False,
    ) -> None:
        network = SequenceNetwork(n_tracks, n_stations, network_settings, causal=False)
        super().__init__(network, settings, positive_feedback)
        self.positives_only = positives_only
        self.learns_feedback_embeddings = not positives_only

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
        # The query: a masked positive on the query station, of the type training predicted.
        tracks[rows, count] = self.network.mask_id
        stations[rows, count] = history.query_station if self.settings.query_station else PAD
        feedback[rows, count] = query_feedback(self.positive_feedback)
        return self.network.hidden_at(tracks, stations, feedback, count)  # (B, D)


class Hybrid(MaskedRecommender[HybridSettings]):
    """The UMAP'24 hybrid (`positives_only`: the baseline), trained against one negative per
    masked position."""

    selection_metric = "paired_accuracy"  # trained to order a positive above one negative

    def __init__(
        self,
        n_tracks: int,
        n_stations: int,
        network_settings: NetworkSettings,
        settings: HybridSettings,
        positive_feedback: tuple[int, ...],
        *,
        positives_only: bool,
    ) -> None:
        super().__init__(
            n_tracks, n_stations, network_settings, settings, positive_feedback, positives_only=positives_only
        )
        self.name = "baseline" if positives_only else "hybrid"

    def cloze_inputs(self, batch: Batch, generator: torch.Generator) -> ClozeInputs:
        """Mask targets, draw their negatives, remove hard negatives used as targets from the inputs."""
        t = self.settings
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
        removed = torch.zeros_like(masked)
        negatives: Tensor | None = None
        used_hard = torch.zeros_like(positives, dtype=torch.bool)
        if t.negative_mode == "stored":
            p_hard = 0.0 if self.positives_only else t.p_hard
            negatives, used_hard = hard_or_random(positives, stored[masked], p_hard, self.n_tracks, generator)
            removed = hidden_positions(tracks, masked, negatives, used_hard)
        inputs = torch.where(masked, self.network.mask_id, tracks).masked_fill(removed, PAD)
        hidden_stations = removed if t.query_station else removed | masked
        return ClozeInputs(
            tracks=inputs,
            stations=stations.masked_fill(hidden_stations, PAD),
            feedback=feedback.masked_fill(removed, PAD),
            masked=masked,
            positives=positives,
            negatives=negatives,
            used_hard=used_hard,
        )

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        c = self.cloze_inputs(batch, generator)
        h = self.network.hidden(c.tracks, c.stations, c.feedback)[c.masked]  # (N, D)
        items = self.network.item_embeddings()
        negatives = c.negatives
        if negatives is None:  # hardest of k random tracks, by the current model's own scores
            candidates = random_negatives(c.positives, self.n_tracks, generator, self.settings.k)  # (N, k)
            with torch.no_grad():
                scores = torch.einsum("nd,nkd->nk", h, items[candidates])
            negatives = hardest(candidates, scores)
        positive_scores = (h * items[c.positives]).sum(-1)  # (N,)
        negative_scores = (h * items[negatives]).sum(-1)  # (N,)
        pairwise = bce_pair_loss(positive_scores, negative_scores)
        hard_share = float(c.used_hard.float().mean()) if c.used_hard.numel() else 0.0
        figures = {
            "masked": float(c.masked.sum()),
            "hard_share": hard_share,
            "pairwise": float(pairwise.detach()),
        }
        if self.settings.catalog_weight <= 0:
            return pairwise, figures
        sampled = self.softmax_negatives(self.settings, generator, h.device)
        catalog = next_item_loss(h, c.positives, items, sampled)
        figures["catalog"] = float(catalog.detach())
        return pairwise + self.settings.catalog_weight * catalog, figures
