"""Losses as functions of scores."""

from __future__ import annotations

import math

import torch

from downbeat.models.losses import bce_pair_loss, info_nce_loss, per_row_scores, sampled_softmax_loss


def test_bce_pair_loss_is_log2_twice_at_zero_and_falls_as_the_positive_wins():
    zero = bce_pair_loss(torch.zeros(3), torch.zeros(3))
    assert math.isclose(float(zero), 2 * math.log(2), rel_tol=1e-6)
    assert float(bce_pair_loss(torch.full((3,), 3.0), torch.full((3,), -3.0))) < float(zero)


def test_sampled_softmax_leaves_out_negatives_that_equal_the_positive():
    positive = torch.tensor([1.0])
    negatives = torch.tensor([[1.0, 50.0]])
    without = sampled_softmax_loss(positive, negatives, torch.tensor([[False, True]]))
    assert math.isclose(float(without), math.log(2), rel_tol=1e-6)
    assert float(sampled_softmax_loss(positive, negatives)) > 40


def test_info_nce_counts_only_rows_with_skipped_tracks():
    positive = torch.tensor([1.0, 2.0])
    negatives = torch.tensor([[0.0, 5.0], [0.0, 0.0]])
    valid = torch.tensor([[True, False], [False, False]])  # row 0: one negative; row 1: none
    loss = info_nce_loss(positive, negatives, valid)
    expected = -math.log(math.exp(1) / (math.exp(1) + math.exp(0)))
    assert math.isclose(float(loss), expected, rel_tol=1e-6)
    assert float(info_nce_loss(positive, negatives, torch.zeros_like(valid))) == 0.0


def test_per_row_scores_match_row_by_row_products_on_either_path():
    # 6 catalog rows, dim 2: 3 negatives a row score the catalog (6 <= 3 * 2), 2 a row gather
    # (6 > 2 * 2). Both must equal the plain loop, values and gradients.
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(4, 2, generator=g)
    items = torch.randn(6, 2, generator=g)
    for count in (3, 2):
        sampled = torch.randint(1, 6, (4, count), generator=g)
        expected = torch.tensor([[float(hidden[n] @ items[i]) for i in sampled[n]] for n in range(4)])
        h, e = hidden.clone().requires_grad_(), items.clone().requires_grad_()
        scores = per_row_scores(h, e, sampled)
        assert torch.allclose(scores, expected, atol=1e-6)
        scores.sum().backward()
        assert e.grad is not None and h.grad is not None
        # a row's hidden state gets the sum of the embeddings it drew
        assert torch.allclose(h.grad, items[sampled].sum(dim=1), atol=1e-6)
        # a catalog row gets the sum of the hidden states of the rows that drew it, once per draw
        drawn = torch.zeros(6, 2)
        for n in range(4):
            for i in sampled[n]:
                drawn[i] += hidden[n]
        assert torch.allclose(e.grad, drawn, atol=1e-6)
