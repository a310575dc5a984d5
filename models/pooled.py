"""Pooled: UMAP'24's objective on a bag-of-history encoder, with a catalog prior beside it.

The user is the normalised sum of the history's track embeddings, each scaled by a vector of its
feedback type and shifted by another (FISM's bag of items, Kabbur et al. KDD'13, reading every
feedback type as UMAP'24 asks): a skip can flip what a track says about the user. It trains as the
hybrid does, each masked positive against its stored hard negative, though by BPR's pairwise
logistic loss (only the difference is learnt), so it learns to order a
user's tracks of one station. Beside that pair score it learns a catalog prior: the user's share of
plays on the track's station (log, scaled) plus a bias per track, trained by a next-item softmax
over the catalog of each masked positive (the pair score held fixed in it). A score is
`pair + catalog_blend * prior`: the prior is what ranks the catalog (station odds and popularity),
the pair score what orders tracks of one station, and `catalog_blend` trades the two (choose it on
validation: popularity is no signal inside a station, so a large blend costs paired accuracy).

A track's station is counted from the training rows (`station_counts`, saved with the model): a
track played on several stations takes each station's share by its plays there. Under DDP each
step broadcasts rank 0's counts to the others (torch's DDP buffers), so the counts are rank 0's rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from downbeat.models.losses import pairwise_logistic_loss
from downbeat.models.negatives import cloze_mask, hard_or_random, hidden_positions
from downbeat.models.network import PAD, Batch, History, InputNetwork, Recommender, dot_scores
from downbeat.models.settings import NetworkSettings


@dataclass(frozen=True)
class PooledSettings:
    """Config `model.pooled` (models/pooled.py)."""

    p_task: float = 0.15  # share of target positions masked per row (at least one)
    p_hard: float = 1.0  # chance a masked position's negative is its stored hard negative (else random)
    history_dropout: float = 0.5  # share of a training row's inputs left out of its user vector
    catalog_weight: float = 1.0  # weight of the prior's next-item softmax beside the pairwise term
    catalog_blend: float = 0.5  # weight of the prior in a score (0: the pair score alone)


class Pooled(Recommender[PooledSettings]):
    name = "pooled"
    selection_metric = "paired_accuracy"
    objective = (
        "each masked positive against one negative (pairwise logistic, stored hard negatives) from a "
        "feedback-weighted bag of the history, plus a station-share and popularity prior trained by a "
        "catalog softmax"
    )

    def __init__(
        self,
        n_tracks: int,
        n_stations: int,
        network_settings: NetworkSettings,
        settings: PooledSettings,
        positive_feedback: tuple[int, ...],
    ) -> None:
        network = InputNetwork(n_tracks, n_stations, network_settings)
        super().__init__(network, settings, positive_feedback)
        self.gate = nn.Embedding(network.feedback.num_embeddings, network_settings.dim)
        network.initialise(self.gate)  # one seed draws every table in one order
        self.prior_scale = nn.Parameter(torch.ones(()))
        self.bias = nn.Parameter(torch.zeros(n_tracks + 1))
        # What no step reads gets no gradient: frozen, so DDP (which waits for every trainable
        # parameter's gradient) and the optimiser leave it alone.
        network.station.requires_grad_(False)
        network.norm.requires_grad_(False)
        if settings.catalog_weight <= 0:  # the prior is not trained: its start (0 bias) is scored
            self.prior_scale.requires_grad_(False)
            self.bias.requires_grad_(False)
        self.station_counts: Tensor  # float64: counts past 2^24 still grow
        self.register_buffer("station_counts", torch.zeros(n_tracks + 1, n_stations + 1, dtype=torch.float64))

    def user_vector(self, tracks: Tensor, feedback: Tensor, keep: Tensor) -> Tensor:
        """(B, D): the kept positions' track embeddings, each times (1 + its feedback's gate) plus
        its feedback's embedding, summed over sqrt(count)."""
        net = self.network
        x = net.track(tracks) * (1.0 + self.gate(feedback)) + net.feedback(feedback)
        x = x * keep.unsqueeze(-1)
        return x.sum(1) / keep.sum(1, keepdim=True).clamp(min=1).sqrt()

    def station_share(self, stations: Tensor, keep: Tensor) -> Tensor:
        """(B, n_stations + 1): the log share of each station among the kept positions (smoothed:
        half a play on every station; column 0, no station, as an unheard station)."""
        counts = torch.zeros(stations.shape[0], self.network.n_stations + 1, device=stations.device)
        counts.scatter_add_(1, stations, keep.float())
        counts[:, PAD] = 0.0
        total = counts.sum(1, keepdim=True)
        return torch.log((counts + 0.5) / (total + 0.5 * self.network.n_stations))

    def track_stations(self) -> Tensor:
        """(n_tracks + 1, n_stations + 1): each track's share of plays on each station, from the
        training rows; a track never seen there counts as played on no station (column 0), which
        scores as an unheard station: never above a station the user plays."""
        counts = self.station_counts.clone()
        counts[counts.sum(1) == 0, PAD] = 1.0
        return (counts / counts.sum(1, keepdim=True)).float()

    def prior(self, share: Tensor, candidates: Tensor | None) -> Tensor:
        """The catalog prior of candidates (B, C), or of every track (B, n_tracks + 1) when None."""
        stations = self.track_stations().to(share.dtype)
        if candidates is None:
            return self.prior_scale * (share @ stations.T) + self.bias
        per_track = torch.einsum("bs,bcs->bc", share, stations[candidates])
        return self.prior_scale * per_track + self.bias[candidates]

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        t = self.settings
        tracks, stations, feedback = batch.tracks, batch.stations, batch.feedback
        with torch.no_grad():  # where each track is played: the prior's stations
            present = tracks != PAD
            self.station_counts.index_put_(
                (tracks[present], stations[present]),
                torch.ones_like(tracks[present], dtype=torch.float64),
                accumulate=True,
            )
        masked = cloze_mask(batch.targets, t.p_task, generator)  # (B, L)
        positives = tracks[masked]  # (N,)
        negatives, used_hard = hard_or_random(
            positives, batch.negatives[masked], t.p_hard, self.n_tracks, generator
        )
        removed = hidden_positions(tracks, masked, negatives, used_hard)
        keep = present & ~masked & ~removed
        if t.history_dropout > 0:
            keep &= torch.rand(keep.shape, generator=generator, device=keep.device) >= t.history_dropout
        rows = masked.nonzero()[:, 0]  # each masked position's row
        users = self.user_vector(tracks, feedback, keep)[rows]  # (N, D)
        items = self.network.item_embeddings()
        pairwise = pairwise_logistic_loss(
            (users * items[positives]).sum(-1), (users * items[negatives]).sum(-1)
        )
        figures = {"masked": float(masked.sum()), "pairwise": float(pairwise.detach())}
        if t.catalog_weight <= 0:
            return pairwise, figures
        share = self.station_share(stations, keep)[rows]  # (N, n_stations + 1)
        logits = (users @ items.T).detach() + self.prior(share, None)  # (N, n_tracks + 1)
        logits[:, PAD] = float("-inf")
        catalog = F.cross_entropy(logits, positives)
        figures["catalog"] = float(catalog.detach())
        return pairwise + t.catalog_weight * catalog, figures

    def parts(self, history: History) -> tuple[Tensor, Tensor]:
        keep = history.tracks != PAD
        return (
            self.user_vector(history.tracks, history.feedback, keep),
            self.station_share(history.stations, keep),
        )

    def user_vectors(self, history: History) -> Tensor:
        """The pair part's user vectors (scores add the prior: score, score_all)."""
        return self.parts(history)[0]

    def score(self, history: History, candidates: Tensor) -> Tensor:
        users, share = self.parts(history)
        pair = dot_scores(users, self.network.item_embeddings(), candidates)
        return pair + self.settings.catalog_blend * self.prior(share, candidates)

    def score_all(self, history: History) -> Tensor:
        users, share = self.parts(history)
        scores = users @ self.network.item_embeddings().T + self.settings.catalog_blend * self.prior(
            share, None
        )
        scores[:, PAD] = float("-inf")
        return scores
