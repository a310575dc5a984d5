"""SASRec with the RecSys'24 skip-aware loss: a causal transformer predicts, at every position, the
next positive; alpha * softmax (over uniform negatives, or the whole catalog: `softmax: full`) +
beta * InfoNCE that pulls the prediction toward that positive and away from the tracks skipped
before it.

Its settings are config `model.sasrec` (SASRecSettings). `CausalRecommender` is what every causal
model here shares (gsasrec, gru4rec, pnfrec): the network, each position's next positive, and
scoring from the hidden state of the user's last play."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from downbeat.models.losses import info_nce_loss, next_item_loss, per_row_scores, sampled_softmax_loss
from downbeat.models.negatives import unseen_negatives
from downbeat.models.network import (
    PAD,
    SKIP,
    Batch,
    History,
    InputNetwork,
    Recommender,
    S,
    SequenceNetwork,
    compact,
    without_last,
)
from downbeat.models.settings import NetworkSettings, SoftmaxSettings


@dataclass(frozen=True)
class SkipAwareSettings(SoftmaxSettings):
    """RecSys'24's loss on a causal model: alpha * next-item softmax + beta * InfoNCE at
    `temperature` (beta 0: the base model alone). sasrec, gru4rec and caser each hold these."""

    alpha: float = 1.0  # weight of the next-item softmax
    beta: float = 0.0  # weight of InfoNCE against the tracks passed over before the next positive
    temperature: float = 0.5  # InfoNCE temperature (cosine similarities)
    # Which tracks between a position and its next positive InfoNCE pushes away: the skipped ones,
    # or every non-positive one (plays and downs too, as RecSys'24 defines it).
    info_nce_negatives: Literal["skips", "non_positive"] = "skips"
    # Where the sampled softmax's negatives come from: uniform over the catalog (one set for the
    # batch), or `sampled_negatives` distinct tracks the row does not hold, a set per row (RecSys'24
    # samples from the items a user has not played).
    negatives_from: Literal["catalog", "unseen"] = "catalog"


@dataclass(frozen=True)
class SASRecSettings(SkipAwareSettings):
    """Config `model.sasrec`: SASRec with RecSys'24's InfoNCE on by default (beta 0.5)."""

    beta: float = 0.5


def next_target(targets: Tensor) -> Tensor:
    """(B, L): index of the first target strictly after each position; L where there is none."""
    b, length = targets.shape
    index = torch.arange(length, device=targets.device).expand(b, length)
    candidate = torch.where(targets, index, length)
    shifted = torch.cat([candidate[:, 1:], torch.full_like(candidate[:, :1], length)], dim=1)
    return shifted.flip(1).cummin(dim=1).values.flip(1)


def skipped_between(feedback: Tensor, following: Tensor, counted: Tensor | None = None) -> Tensor:
    """(B, L, L) bool: [b, t, j] when j lies strictly between t and its next target and was skipped
    (or, given `counted` (B, L) bool, is one of the counted positions)."""
    length = feedback.shape[1]
    index = torch.arange(length, device=feedback.device)
    after = index.view(1, 1, length) > index.view(1, length, 1)  # j > t
    before = index.view(1, 1, length) < following.unsqueeze(2)  # j < next target of t
    kind = (feedback == SKIP) if counted is None else counted
    return after & before & kind.unsqueeze(1)


@dataclass
class NextPositive:
    """A causal pass over a batch: what each position predicts."""

    hidden: Tensor  # (B, L, D) hidden states
    valid: Tensor  # (B, L) bool, real positions with a positive after them
    following: Tensor  # (B, L) index of that next positive (L where none)
    positives: Tensor  # (B, L) its track id (meaningless where not valid)


class CausalRecommender(Recommender[S]):
    """Causal next-positive model; a user's vector is the hidden state of their last play."""

    def __init__(
        self,
        n_tracks: int,
        n_stations: int,
        network_settings: NetworkSettings,
        settings: S,
        positive_feedback: tuple[int, ...],
        network: InputNetwork | None = None,
    ) -> None:
        """network: a causal network (a transformer unless given)."""
        network = network or SequenceNetwork(n_tracks, n_stations, network_settings, causal=True)
        super().__init__(network, settings, positive_feedback)

    def next_positive(self, batch: Batch) -> NextPositive:
        """Each position's hidden state and the next positive it predicts. The row's last item is
        a target only, never an input (network.without_last): the position before it then trains
        the slot that scoring reads."""
        tracks = batch.tracks
        length = tracks.shape[1]
        following = next_target(batch.targets)  # (B, L)
        inputs = without_last(tracks)
        valid = (inputs != PAD) & (following < length)  # input positions with a next positive
        hidden = self.network.hidden(inputs, batch.stations, batch.feedback)  # (B, L, D)
        positives = tracks.gather(1, following.clamp(max=length - 1))  # (B, L), meaningful where valid
        return NextPositive(hidden, valid, following, positives)

    def user_vectors(self, history: History) -> Tensor:
        keep = self.inputs_of(history)
        count = keep.sum(dim=1)
        width = int(min(self.network.settings.max_length, max(int(count.max()) if count.numel() else 0, 1)))
        tracks, stations, feedback = compact(keep, width, history.tracks, history.stations, history.feedback)
        # A user without history reads one mask token (never trained on): a fixed, uninformed vector.
        empty = count == 0
        tracks[:, 0] = torch.where(empty, self.network.mask_id, tracks[:, 0])
        last = (count.clamp(max=width) - 1).clamp(min=0)
        return self.network.hidden_at(tracks, stations, feedback, last)  # (B, D)


class SASRec(CausalRecommender[SASRecSettings]):
    """SASRec with RecSys'24's skip-aware InfoNCE beside its next-item softmax."""

    name = "sasrec"
    objective = (
        "causal next-item sampled softmax plus InfoNCE against the tracks passed over before the "
        "next positive (RecSys'24)"
    )

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        return skip_aware_loss(self, batch, generator, self.settings)


def skip_aware_loss(
    model: CausalRecommender[Any], batch: Batch, generator: torch.Generator, t: SkipAwareSettings
) -> tuple[Tensor, dict[str, float]]:
    """alpha * next-item softmax + beta * InfoNCE (RecSys'24) of a causal model's states: the
    loss of sasrec, and of gru4rec and caser (whose beta is 0 unless set)."""
    tracks = batch.tracks
    step = model.next_positive(batch)
    valid, hidden = step.valid, step.hidden
    items = model.network.item_embeddings()
    h = hidden[valid]  # (N, D)
    positives = step.positives[valid]  # (N,)
    if t.softmax == "sampled" and t.negatives_from == "unseen" and positives.numel():
        # each row's own unseen tracks (a row holding nearly the whole catalog also gets some of its
        # own, so a draw equal to the positive is still left out)
        sampled = unseen_negatives(tracks, model.n_tracks, t.sampled_negatives, generator)  # (B, S)
        row_of = valid.nonzero(as_tuple=True)[0]  # (N,) the row of each position in h
        drawn = sampled[row_of]  # (N, S)
        softmax = sampled_softmax_loss(
            (h * items[positives]).sum(-1), per_row_scores(h, items, drawn), drawn == positives.unsqueeze(1)
        )
    else:
        # one set of uniform negatives for the whole batch (any equal to a row's positive is
        # left out), or the whole catalog; no position at all: 0
        softmax = next_item_loss(h, positives, items, model.softmax_negatives(t, generator, tracks.device))
    figures = {f"{t.softmax}_softmax": float(softmax.detach())}  # full_softmax | sampled_softmax
    if t.beta == 0:
        return t.alpha * softmax, figures
    # InfoNCE on cosine similarities: each position against every track of its row (one
    # batched product), of which only those skipped before its next positive count.
    anchor = F.normalize(hidden, dim=-1)  # (B, L, D)
    row_items = F.normalize(items[tracks], dim=-1)  # (B, L, D)
    similar = anchor @ row_items.transpose(1, 2) / t.temperature  # (B, L, L)
    toward = (anchor * F.normalize(items[step.positives], dim=-1)).sum(-1) / t.temperature  # (B, L)
    # RecSys'24 as written: every non-positive in between (plays and downs too); else skips only
    counted = (tracks != PAD) & ~batch.targets if t.info_nce_negatives == "non_positive" else None
    between = skipped_between(batch.feedback, step.following, counted) & valid.unsqueeze(2)  # (B, L, L)
    nce = info_nce_loss(toward[valid], similar[valid], between[valid])
    figures["info_nce"] = float(nce.detach())
    return t.alpha * softmax + t.beta * nce, figures
