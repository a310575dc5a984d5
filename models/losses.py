"""Losses: standalone functions of scores, so each can be tested without a model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def bce_pair_loss(positive: Tensor, negative: Tensor) -> Tensor:
    """Binary cross-entropy of each positive's score (label 1) and its negative's (label 0).

    positive, negative: (N,) logits. Returns the mean over the 2N terms' pairs (a scalar).
    """
    return F.softplus(-positive).mean() + F.softplus(negative).mean()


def pairwise_logistic_loss(positive: Tensor, negative: Tensor) -> Tensor:
    """BPR's loss: -log sigmoid(positive - negative), the mean over the N pairs (a scalar). Only the
    difference is learnt: what orders the pair, whatever each score's level."""
    return F.softplus(negative - positive).mean()


def sampled_softmax_loss(positive: Tensor, negatives: Tensor, collide: Tensor | None = None) -> Tensor:
    """Cross-entropy of the positive among sampled negatives.

    positive: (N,) logits; negatives: (N, S) logits; collide: (N, S) bool, negatives that equal the
    positive, which are left out of the softmax. Returns a scalar.
    """
    if collide is not None:
        negatives = negatives.masked_fill(collide, float("-inf"))
    logits = torch.cat([positive.unsqueeze(1), negatives], dim=1)  # (N, 1 + S)
    return -torch.log_softmax(logits, dim=1)[:, 0].mean()


def info_nce_loss(positive: Tensor, negatives: Tensor, valid: Tensor) -> Tensor:
    """InfoNCE from similarities (already divided by the temperature): the positive against the
    valid negatives of its row.

    positive: (N,); negatives: (N, M); valid: (N, M) bool, which negatives exist (for SASRec, the
    tracks skipped before the next positive). Rows without a valid negative add nothing. Returns a
    scalar (0 when no row has a negative).
    """
    rows = valid.any(dim=1)
    if not bool(rows.any()):
        return positive.sum() * 0.0
    neg = negatives[rows].masked_fill(~valid[rows], float("-inf"))  # (R, M)
    logits = torch.cat([positive[rows].unsqueeze(1), neg], dim=1)  # (R, 1 + M)
    return -torch.log_softmax(logits, dim=1)[:, 0].mean()


def gbce_beta(sampled: int, n_tracks: int, t: float) -> float:
    """gSASRec's exponent of the positive probability: beta = alpha * (t * (1 - 1/alpha) + 1/alpha),
    alpha = sampled / (n_tracks - 1) the share of the other tracks drawn as negatives (at most 1).

    t = 0 gives beta = 1 (plain BCE), t = 1 gives beta = alpha (fully calibrated to the sampling).
    """
    alpha = min(1.0, sampled / max(1, n_tracks - 1))
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


def gbce_loss(positive: Tensor, negatives: Tensor, beta: float, collide: Tensor | None = None) -> Tensor:
    """Generalised BCE (gSASRec): -log(sigmoid(s+)^beta) - sum log(1 - sigmoid(s-)), averaged over
    the 1 + S logits of a row (as BCE over the row's labels is), then over rows.

    positive: (N,) logits; negatives: (N, S) logits; collide: (N, S) bool, negatives equal to the
    positive, which add nothing. Returns a scalar.
    """
    if positive.numel() == 0:
        return negatives.sum() * 0.0
    terms = F.softplus(negatives)
    if collide is not None:
        terms = terms.masked_fill(collide, 0.0)
    per_row = beta * F.softplus(-positive) + terms.sum(dim=1)
    return per_row.mean() / (1 + negatives.shape[1])


def full_softmax_loss(hidden: Tensor, items: Tensor, positives: Tensor) -> Tensor:
    """Cross-entropy of each positive among every catalog track.

    hidden: (N, D); items: (n_tracks + 1, D), row 0 padding (never a candidate); positives: (N,) ids
    in 1..n_tracks. Returns a scalar (0 when N is 0).
    """
    if positives.numel() == 0:
        return hidden.sum() * 0.0
    logits = hidden @ items[1:].T  # (N, n_tracks): column j scores track j + 1
    return F.cross_entropy(logits, positives - 1)


def not_to_recommend_loss(negative: Tensor) -> Tensor:
    """-log(1 - sigmoid(s)) of tracks the user rejected outright: pushes their scores down.

    negative: (N,) logits. Returns the mean (0 when N is 0).
    """
    if negative.numel() == 0:
        return negative.sum() * 0.0
    return F.softplus(negative).mean()


def per_row_scores(hidden: Tensor, items: Tensor, sampled: Tensor) -> Tensor:
    """(N, S) logits of each row's own sampled tracks: row n against `items[sampled[n]]`.

    hidden: (N, D); items: (n_tracks + 1, D); sampled: (N, S) ids. The same values two ways (up
    to float summation order), chosen by the memory each holds per row: gathering the sampled
    embeddings, S * D floats (and a scatter-add backward), or scoring the whole catalog and picking
    S columns, n_tracks + 1 floats (more multiply-adds, but one dense product each way). On the
    ML-1M part (3,603 rows, 256 negatives, dim 64) the catalog product is ~10x faster on the CPU,
    backward included; a catalog of millions of tracks keeps the gather.
    """
    if items.shape[0] <= sampled.shape[1] * items.shape[1]:
        return (hidden @ items.T).gather(1, sampled)
    return torch.einsum("nd,nsd->ns", hidden, items[sampled])


def next_item_loss(hidden: Tensor, positives: Tensor, items: Tensor, sampled: Tensor | None) -> Tensor:
    """Softmax cross-entropy of each positive: among every catalog track (`sampled` None), or
    among the `sampled` track ids (S,), leaving out any equal to the row's positive.

    hidden: (N, D); positives: (N,) ids in 1..n_tracks; items: (n_tracks + 1, D).
    Returns a scalar (0 when N is 0).
    """
    if positives.numel() == 0:
        return hidden.sum() * 0.0
    if sampled is None:
        return full_softmax_loss(hidden, items, positives)
    positive_scores = (hidden * items[positives]).sum(-1)  # (N,)
    negative_scores = hidden @ items[sampled].T  # (N, S)
    return sampled_softmax_loss(
        positive_scores, negative_scores, sampled.unsqueeze(0) == positives.unsqueeze(1)
    )
