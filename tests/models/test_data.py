"""The Petastorm stream over a Delta snapshot: padding, shards, epochs."""

from __future__ import annotations

import numpy as np
import pytest

from models.data import SequenceStream, pad_right, sequence_facts
from models.plots import tier_shares_by_position
from tests.models.tables import sequence_rows, write_sequences


def test_pad_right_keeps_each_rows_last_items_and_pads_with_zeros():
    out = pad_right([np.array([1, 2, 3, 4]), np.array([], dtype=int), np.array([7])], 3)
    assert out.tolist() == [[2, 3, 4], [0, 0, 0], [7, 0, 0]]


def rows_of(stream, epoch):
    seen = []
    for batch in stream.epoch(epoch):
        for row in batch.tracks.numpy():
            seen.append(tuple(row[row != 0]))
    return seen


@pytest.mark.parametrize(("files", "world"), [(4, 2), (1, 2)])  # by row group; by user (too few row groups)
def test_ranks_read_disjoint_shards_that_cover_every_train_row(tmp_path, files, world):
    table = sequence_rows(40)
    snapshot = write_sequences(tmp_path / "seq", table, files=files)
    expected = {
        tuple(t)
        for t, s in zip(table.column("track_ids").to_pylist(), table.column("split").to_pylist(), strict=True)
        if s == "train"
    }
    shards = []
    for rank in range(world):
        stream = SequenceStream(
            snapshot.files,
            batch_size=4,
            steps=4,
            max_length=32,
            seed=3,
            shuffle_buffer=8,
            rank=rank,
            world=world,
        )
        stream.steps = 100  # enough to pass over the whole shard; keep the first pass
        shard = set()
        for batch in stream.epoch(0):
            for row in batch.tracks.numpy():
                shard.add(tuple(row[row != 0]))
            if len(shard) >= len(expected) // world and stream.rows_read > 2 * len(expected):
                break
        shards.append(shard)
    assert shards[0].isdisjoint(shards[1])
    assert shards[0] | shards[1] == expected


def test_an_epoch_has_exactly_steps_full_batches_and_the_same_epoch_reads_the_same_rows(tmp_path):
    snapshot = write_sequences(tmp_path / "seq", sequence_rows(30), files=3)
    stream = SequenceStream(snapshot.files, batch_size=8, steps=5, max_length=32, seed=1, shuffle_buffer=16)
    batches = list(stream.epoch(2))
    assert [b.rows for b in batches] == [8] * 5
    assert rows_of(stream, 2) == rows_of(stream, 2)
    assert rows_of(stream, 2) != rows_of(stream, 3)
    assert stream.rows_per_second > 0


def test_validation_rows_never_enter_the_training_stream_and_targets_are_aligned(tmp_path):
    table = sequence_rows(20, validation_every=2)
    snapshot = write_sequences(tmp_path / "seq", table)
    validation = {
        tuple(t)
        for t, s in zip(table.column("track_ids").to_pylist(), table.column("split").to_pylist(), strict=True)
        if s == "validation"
    }
    stream = SequenceStream(snapshot.files, batch_size=5, steps=4, max_length=32, seed=0, shuffle_buffer=5)
    for batch in stream.epoch(0):
        for tracks, feedback, targets in zip(
            batch.tracks.numpy(), batch.feedback.numpy(), batch.targets.numpy(), strict=True
        ):
            assert tuple(tracks[tracks != 0]) not in validation
            assert ((feedback == 1) == targets).all()


def test_long_rows_keep_their_most_recent_positions(tmp_path):
    table = sequence_rows(6)
    snapshot = write_sequences(tmp_path / "seq", table)
    stream = SequenceStream(snapshot.files, batch_size=6, steps=1, max_length=3, seed=0, shuffle_buffer=6)
    (batch,) = list(stream.epoch(0))
    train = {
        tuple(t[-3:])
        for t, s in zip(table.column("track_ids").to_pylist(), table.column("split").to_pylist(), strict=True)
        if s == "train"
    }
    assert {tuple(r[r != 0]) for r in batch.tracks.numpy()} <= train
    assert batch.tracks.shape[1] == 3


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
