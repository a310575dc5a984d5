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
