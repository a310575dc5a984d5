"""The training stream over gold/training_sequences: layout, shards, epochs, read-ahead, both readers."""

from __future__ import annotations

import threading
import time

import numpy as np
import pyarrow as pa
import pytest
import torch

from downbeat.models.contract import TRAINING_ARRAYS
from downbeat.models.loader import (
    LOADERS,
    Prefetcher,
    ShuffledBatches,
    TrainingStream,
    chunk_source,
    decode,
    decode_binary,
    user_shard,
)
from downbeat.models.network import UP
from tests.models.helpers import random_batch
from tests.models.tables import sequence_rows, training_rows, write_training

ROWS = sequence_rows(40, validation_every=5)


def train_rows(table: pa.Table) -> dict[str, dict[str, list[int]]]:
    """user -> each array of the user's train row, unpadded."""
    return {
        r["user_id"]: {c: r[c] for c in TRAINING_ARRAYS} for r in table.to_pylist() if r["split"] == "train"
    }


def row_key(batch, i: int) -> tuple[int, ...]:
    tracks = batch.tracks[i].numpy()
    return tuple(int(t) for t in tracks[tracks != 0])


def stream(snapshot, loader="petastorm", **overrides) -> TrainingStream:
    values = dict(batch_size=8, steps=5, max_length=32, seed=1, shuffle_buffer=16, loader=loader)
    values.update(overrides)
    return TrainingStream(snapshot.files, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize(("files", "world"), [(4, 2), (1, 2)])  # by row group; by user (too few groups)
def test_ranks_read_disjoint_shards_that_cover_every_train_row(tmp_path, loader, files, world):
    snapshot = write_training(tmp_path / "t", ROWS, files=files)
    expected = {tuple(r["track_ids"]) for r in train_rows(ROWS).values()}
    shards = []
    for rank in range(world):
        batches = ShuffledBatches(
            chunk_source(loader, snapshot.files, rank, world),
            batch_size=4,
            steps=40,  # several passes over a shard of ~16 rows
            width=32,
            seed=3,
            shuffle_buffer=8,
            rank=rank,
            world=world,
        )
        shards.append({row_key(b, i) for b in batches.epoch(0) for i in range(b.rows)})
    assert shards[0].isdisjoint(shards[1])
    assert shards[0] | shards[1] == expected


@pytest.mark.parametrize("loader", LOADERS)
def test_an_epoch_has_exactly_steps_full_batches_and_the_same_epoch_reads_the_same_rows(tmp_path, loader):
    snapshot = write_training(tmp_path / "t", ROWS, files=3)
    s = stream(snapshot, loader)

    def rows_of(epoch):
        return [row_key(b, i) for b in s.epoch(epoch) for i in range(b.rows)]

    assert [b.rows for b in s.epoch(2)] == [8] * 5
    assert s.rows_per_second > 0
    assert rows_of(2) == rows_of(2)
    assert rows_of(2) != rows_of(3)


@pytest.mark.parametrize("loader", LOADERS)
def test_rows_are_left_padded_aligned_and_trimmed_to_the_longest_row_of_their_batch(tmp_path, loader):
    snapshot = write_training(tmp_path / "t", ROWS, width=32, files=2)
    by_tracks = {tuple(r["track_ids"]): r for r in train_rows(ROWS).values()}
    for batch in stream(snapshot, loader, max_length=32).epoch(0):
        lengths = (batch.tracks != 0).sum(dim=1)
        assert batch.tracks.shape[1] == int(lengths.max())  # no column of padding only
        assert batch.tracks.dtype == torch.int32 and batch.targets.dtype == torch.bool
        for i in range(batch.rows):
            width, n = batch.tracks.shape[1], int(lengths[i])
            assert (batch.tracks[i, : width - n] == 0).all()  # padding first, then the items
            row = by_tracks[row_key(batch, i)]
            got = {
                "station_ids": batch.stations,
                "feedback_ids": batch.feedback,
                "is_target": batch.targets.long(),
                "negative_track_ids": batch.negatives,
                "negative_tiers": batch.tiers,
            }
            for column, values in got.items():
                assert values[i, width - n :].tolist() == row[column]
            assert ((batch.feedback[i] == UP) == batch.targets[i]).all()


@pytest.mark.parametrize("loader", LOADERS)
def test_a_shorter_max_length_keeps_each_rows_most_recent_positions(tmp_path, loader):
    snapshot = write_training(tmp_path / "t", ROWS, width=32)
    recent = {tuple(r["track_ids"][-3:]) for r in train_rows(ROWS).values()}
    for batch in stream(snapshot, loader, max_length=3).epoch(0):
        assert batch.tracks.shape[1] == 3
        assert {row_key(batch, i) for i in range(batch.rows)} <= recent


def test_both_readers_cover_the_same_rows_over_a_pass(tmp_path):
    snapshot = write_training(tmp_path / "t", ROWS, files=3)
    seen = []
    for loader in LOADERS:
        source = chunk_source(loader, snapshot.files, 0, 1)
        chunks = source(5)
        rows = 0
        keys = set()
        while rows < snapshot.rows:
            chunk = next(chunks)
            rows += chunk.rows
            keys |= {tuple(t[t != 0]) for t in chunk.columns["track_ids"]}
        chunks.close()
        seen.append(keys)
    assert seen[0] == seen[1] == {tuple(r["track_ids"]) for r in train_rows(ROWS).values()}


@pytest.mark.parametrize("loader", LOADERS)
def test_every_pass_reads_its_row_groups_in_the_same_order_however_slow_the_consumer(tmp_path, loader):
    """A consumer that pauses at each chunk (as a training step does) reads passes after the
    first in the same order as one that does not: petastorm's ventilator, left to run pass after
    pass, shuffled a pass again for each wait on its queue at the pass's start."""
    snapshot = write_training(tmp_path / "t", ROWS, files=8)

    def first_tracks(pause: float) -> list[tuple[int, ...]]:
        chunks = chunk_source(loader, snapshot.files, 0, 1)(3)
        keys = []
        for _ in range(4 * 8):  # four passes of 8 row groups
            chunk = next(chunks)
            keys.append(tuple(int(t) for t in chunk.columns["track_ids"][0] if t != 0))
            time.sleep(pause)
        chunks.close()
        return keys

    fast = first_tracks(0.0)
    assert first_tracks(0.05) == fast
    assert len({tuple(fast[i : i + 8]) for i in range(0, len(fast), 8)}) > 1  # passes differ in order


def test_a_binary_column_that_is_not_fixed_width_is_refused_naming_it():
    with pytest.raises(ValueError, match="column track_ids of gold/training_sequences is not fixed-width"):
        decode("track_ids", [b"\x01\x00\x00\x00", b"\x01\x00\x00\x00\x02\x00\x00\x00"], 2)


def test_the_reference_rows_are_what_the_reader_decodes():
    rows = training_rows(ROWS, width=5)
    tracks = decode("track_ids", rows.column("track_ids").to_pylist(), rows.num_rows)
    first = next(r for r in ROWS.to_pylist() if r["split"] == "train")["track_ids"][-5:]
    assert tracks.shape == (rows.num_rows, 5)
    assert tracks[0].tolist() == [0] * (5 - len(first)) + first


def test_the_prefetcher_reads_ahead_hands_on_errors_and_stops_with_its_consumer():
    def batches(epoch):
        for i in range(100):
            if epoch == 1 and i == 2:
                raise OSError("disk gone")
            yield random_batch(seed=i, rows=2)

    ahead = Prefetcher(batches, depth=3)  # type: ignore[arg-type]
    it = ahead.epoch(0)
    assert torch.equal(next(it).tracks, random_batch(seed=0, rows=2).tracks)
    it.close()  # the consumer stops early: the producer thread ends with it
    assert not any(t.name.startswith("downbeat-loader") and t.is_alive() for t in threading.enumerate())
    assert ahead.rows >= 2 and ahead.rows_per_second > 0
    got = []
    with pytest.raises(OSError, match="disk gone"):
        for batch in ahead.epoch(1):
            got.append(batch)
    assert len(got) == 2  # what was read before the error still arrived, in order


def test_a_table_with_fewer_row_groups_than_ranks_refuses_a_rank_without_users(tmp_path):
    table = sequence_rows(4, validation_every=10**6)  # three train users (u000 validates), one row group
    snapshot = write_training(tmp_path / "t", table)
    users = training_rows(table, 32).column("user_id").to_pylist()
    holding = set(user_shard(np.array(users), 8).tolist())
    for rank in range(8):
        if rank in holding:
            assert chunk_source("arrow", snapshot.files, rank, 8).by_row_group is False
        else:
            with pytest.raises(ValueError, match=f"rank {rank} of 8 has no users in gold/training_sequences"):
                chunk_source("arrow", snapshot.files, rank, 8)
    assert 1 <= len(holding) <= 3


def test_a_consumer_that_fails_after_the_producer_finished_still_ends_the_producer():
    def batches(epoch):
        yield from (random_batch(seed=i, rows=2) for i in range(2))

    ahead = Prefetcher(batches, depth=1)  # type: ignore[arg-type]
    it = ahead.epoch(0)
    next(it)
    deadline = time.monotonic() + 5
    while ahead.rows < 2 and time.monotonic() < deadline:  # the producer is done, waiting to hand over
        time.sleep(0.01)
    it.close()
    assert not any(t.name.startswith("downbeat-loader") and t.is_alive() for t in threading.enumerate())


def test_an_arrow_binary_column_decodes_in_place_slices_included():
    values = [np.array([i, i + 1], dtype="<i4").tobytes() for i in (1, 3, 5)]
    column = pa.array(values, pa.binary()).slice(1)
    assert decode_binary("track_ids", column).tolist() == [[3, 4], [5, 6]]
    with pytest.raises(ValueError, match="column track_ids of gold/training_sequences is string, not binary"):
        decode_binary("track_ids", pa.array(["x"]))
