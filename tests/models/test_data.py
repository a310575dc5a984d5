"""Snapshots read whole: padding of scoring histories, the facts training needs from gold/sequences."""

from __future__ import annotations

import numpy as np

from downbeat.models.data import pad_right, sequence_facts
from downbeat.models.plots import tier_shares_by_position
from tests.models.tables import sequence_rows, write_sequences


def test_pad_right_keeps_each_rows_last_items_and_pads_with_zeros():
    out = pad_right([np.array([1, 2, 3, 4]), np.array([], dtype=int), np.array([7])], 3)
    assert out.tolist() == [[2, 3, 4], [0, 0, 0], [7, 0, 0]]


def test_sequence_facts_count_train_rows_and_place_each_target_in_its_position_bin(tmp_path):
    table = sequence_rows(25, validation_every=4)
    facts = sequence_facts(write_sequences(tmp_path / "seq", table), bins=4)
    where, tiers, feedback = [], [], set()
    rows = table.to_pylist()
    for row in rows:
        if row["split"] != "train":
            continue
        n = len(row["track_ids"])
        for i, (t, f, tier) in enumerate(
            zip(row["is_target"], row["feedback_ids"], row["negative_tiers"], strict=True)
        ):
            if t:
                where.append(min(i * 4 // n, 3))
                tiers.append(tier)
                feedback.add(f)
    assert facts.train_rows == sum(r["split"] == "train" for r in rows)
    assert facts.tier_where.tolist() == where and facts.tier.tolist() == tiers
    assert facts.positive_feedback == tuple(sorted(feedback))
    shares = tier_shares_by_position(facts.tier_where, facts.tier, bins=4)
    assert np.allclose(shares.sum(axis=1)[np.bincount(where, minlength=4) > 0], 1.0)
