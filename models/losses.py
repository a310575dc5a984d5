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


def sampled_softmax_loss(positive: Tensor, negatives: Tensor, collide: Tensor | None = None) -> Tensor:
    """Cross-entropy of the positive among sampled negatives.

    positive: (N,) logits; negatives: (N, S) logits; collide: (N, S) bool, negatives that equal the
    positive, which are left out of the softmax. Returns a scalar.
    """
    if collide is not None:
        negatives = negatives.masked_fill(collide, float("-inf"))
    logits = torch.cat([positive.unsqueeze(1), negatives], dim=1)  # (N, 1 + S)
    return -torch.log_softmax(logits, dim=1)[:, 0].mean()


def info_nce_loss(
    anchor: Tensor, positive: Tensor, negatives: Tensor, valid: Tensor, temperature: float
) -> Tensor:
    """InfoNCE with cosine similarity: pull `anchor` to `positive`, push it from the valid negatives.

    anchor, positive: (N, D); negatives: (N, M, D); valid: (N, M) bool, which negatives exist
    (the skipped tracks before the next positive). Rows without any valid negative add nothing.
    Returns a scalar (0 when no row has a negative).
    """
    rows = valid.any(dim=1)
    if not bool(rows.any()):
        return anchor.sum() * 0.0
    a = F.normalize(anchor[rows], dim=-1)  # (R, D)
    pos = (a * F.normalize(positive[rows], dim=-1)).sum(-1) / temperature  # (R,)
    neg = torch.einsum("rd,rmd->rm", a, F.normalize(negatives[rows], dim=-1)) / temperature  # (R, M)
    neg = neg.masked_fill(~valid[rows], float("-inf"))
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
    return -torch.log_softmax(logits, dim=1)[:, 0].mean()
