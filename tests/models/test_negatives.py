"""Masking and negative sampling on whole batches."""

from __future__ import annotations

import pytest
import torch

from downbeat.models.hybrid import Hybrid
from downbeat.models.negatives import (
    cloze_mask,
    hard_or_random,
    hardest,
    hidden_positions,
    random_negatives,
    unseen_negatives,
)
from downbeat.models.network import PAD
from tests.models.helpers import N_STATIONS, N_TRACKS, random_batch, settings


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("p", [0.0, 0.15, 1.0])
def test_cloze_mask_touches_only_targets_and_masks_at_least_one_per_row(seed, p):
    batch = random_batch(seed)
    masked = cloze_mask(batch.targets, p, torch.Generator().manual_seed(seed))
    assert not (masked & ~batch.targets).any()
    assert (masked.any(dim=1) == batch.targets.any(dim=1)).all()
    if p == 1.0:
        assert torch.equal(masked, batch.targets)


@pytest.mark.parametrize("seed", range(5))
def test_cloze_mask_always_masks_each_rows_last_target_besides_the_random_share(seed):
    batch = random_batch(seed, rows=16, length=20)
    masked = cloze_mask(batch.targets, 0.3, torch.Generator().manual_seed(seed))
    positions = torch.arange(batch.targets.shape[1]).expand_as(batch.targets)
    last = torch.where(batch.targets, positions, -1).max(dim=1).values
    rows = (last >= 0).nonzero(as_tuple=True)[0]
    assert masked[rows, last[rows]].all()
    assert (masked.sum(dim=1) > 1).any()  # the random share still masks others


def test_cloze_mask_leaves_rows_without_targets_alone():
    targets = torch.tensor([[False, False, False], [False, True, False]])
    masked = cloze_mask(targets, 0.0, torch.Generator().manual_seed(0))
    assert masked.tolist() == [[False, False, False], [False, True, False]]


@pytest.mark.parametrize("n_tracks", [2, 3, 50])
def test_a_random_negative_never_equals_its_target_and_stays_in_the_catalog(n_tracks):
    positives = torch.arange(1, n_tracks + 1).repeat(200)
    g = torch.Generator().manual_seed(1)
    single = random_negatives(positives, n_tracks, g)
    many = random_negatives(positives, n_tracks, g, k=7)
    assert not (single == positives).any()
    assert not (many == positives.unsqueeze(1)).any()
    for drawn in (single, many):
        assert drawn.min() >= 1 and drawn.max() <= n_tracks
    # every other track can be drawn (the step over the positive keeps the draw uniform)
    assert set(many[positives == 1].flatten().tolist()) == set(range(2, n_tracks + 1))


def test_hard_or_random_takes_the_stored_negative_when_p_hard_is_one_and_random_where_none_is_stored():
    positives = torch.tensor([5, 6, 7, 8])
    stored = torch.tensor([9, 0, 7, 3])  # none for the 2nd; the 3rd equals its positive (unusable)
    negatives, hard = hard_or_random(positives, stored, 1.0, N_TRACKS, torch.Generator().manual_seed(0))
    assert hard.tolist() == [True, False, False, True]
    assert negatives[hard].tolist() == [9, 3]
    assert not (negatives == positives).any()
    never, hard0 = hard_or_random(positives, stored, 0.0, N_TRACKS, torch.Generator().manual_seed(0))
    assert not hard0.any() and not (never == positives).any()


def test_hardest_picks_the_highest_scoring_candidate():
    candidates = torch.tensor([[4, 5, 6], [7, 8, 9]])
    scores = torch.tensor([[0.1, 0.9, 0.3], [2.0, -1.0, 1.0]])
    assert hardest(candidates, scores).tolist() == [5, 7]


def test_hidden_positions_are_the_other_occurrences_of_used_hard_negatives():
    tracks = torch.tensor([[1, 2, 3, 2, 0], [4, 5, 4, 6, 0]])
    masked = torch.tensor([[False, False, True, False, False], [False, True, False, False, False]])
    negatives = torch.tensor([2, 4])  # row 0's masked 3 against 2; row 1's masked 5 against 4
    hidden = hidden_positions(tracks, masked, negatives, torch.tensor([True, False]))
    assert hidden.tolist() == [[False, True, False, True, False], [False] * 5]


@pytest.mark.parametrize("seed", range(8))
def test_a_hidden_hard_negative_never_appears_in_that_rows_inputs(seed):
    model_settings = settings(p_task=0.5, p_hard=1.0)[0]
    model = Hybrid(N_TRACKS, N_STATIONS, model_settings, model_settings.hybrid, (1,), positives_only=False)
    batch = random_batch(seed)
    c = model.cloze_inputs(batch, torch.Generator().manual_seed(seed))
    rows = c.masked.nonzero(as_tuple=True)[0]
    assert c.used_hard.any()
    for row, negative, hard in zip(rows.tolist(), c.negatives.tolist(), c.used_hard.tolist(), strict=True):
        if hard:
            assert negative not in c.tracks[row].tolist()
    # only hidden or masked positions differ from the batch; masked ones carry the mask token
    assert (c.tracks[c.masked] == model.network.mask_id).all()
    changed = (c.tracks != batch.tracks) & ~c.masked
    assert (c.tracks[changed] == PAD).all()
    assert not (c.negatives == c.positives).any()


def test_the_baseline_reads_only_positives_and_never_uses_stored_negatives():
    model_settings = settings(p_task=0.5, p_hard=1.0)[0]
    model = Hybrid(N_TRACKS, N_STATIONS, model_settings, model_settings.hybrid, (1,), positives_only=True)
    batch = random_batch(3)
    c = model.cloze_inputs(batch, torch.Generator().manual_seed(3))
    assert not c.used_hard.any()
    kept = c.tracks[c.tracks != PAD]
    assert len(kept) == int(batch.targets.sum())
    assert set(c.feedback[c.tracks != PAD].tolist()) == {1}


@pytest.mark.parametrize("seed", range(3))
def test_unseen_negatives_are_distinct_tracks_the_row_does_not_hold(seed):
    batch = random_batch(seed, rows=8, length=12)
    drawn = unseen_negatives(batch.tracks, N_TRACKS, 20, torch.Generator().manual_seed(seed))
    assert drawn.shape == (8, 20)
    assert drawn.min() >= 1 and drawn.max() <= N_TRACKS
    for row, ids in zip(batch.tracks.tolist(), drawn.tolist(), strict=True):
        assert len(set(ids)) == 20
        assert not set(ids) & set(row)
    again = unseen_negatives(batch.tracks, N_TRACKS, 20, torch.Generator().manual_seed(seed))
    assert torch.equal(drawn, again)


def test_unseen_negatives_of_a_row_holding_most_of_the_catalog_take_its_unseen_tracks_first():
    rows = torch.tensor([[1, 2, 3, 4, 5, 6, 0, 0]])  # 6 of 8 tracks seen, padding too
    drawn = unseen_negatives(rows, 8, 4, torch.Generator().manual_seed(0))[0].tolist()
    assert sorted(drawn[:2]) == [7, 8]
    assert set(drawn[2:]) <= {1, 2, 3, 4, 5, 6} and len(set(drawn)) == 4  # never padding
    with pytest.raises(ValueError, match="cannot draw 9 distinct negatives from a catalog of 8"):
        unseen_negatives(rows, 8, 9, torch.Generator().manual_seed(0))
