"""Losses as functions of scores."""

from __future__ import annotations

import math

import torch

from downbeat.models.losses import bce_pair_loss, info_nce_loss, sampled_softmax_loss


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
