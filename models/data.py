"""Delta snapshots into tensors: Petastorm for the training stream, pyarrow for the small tables.

`fit()` never sees this module's readers: it takes an iterable of Batches per epoch, which
`SequenceStream.epoch()` provides.
"""

from __future__ import annotations

import logging
import time
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs
import pyarrow.parquet as pq
import torch

from contract import SEQUENCE_ARRAYS as LIST_COLUMNS
from contract import SPLIT, TRAIN, USER_ID
from models.network import Batch, History

log = logging.getLogger("downbeat.data")


@dataclass(frozen=True)
class TableSnapshot:
    """One version of one Delta table: what a run read, and the data files to read it from."""

    table: str
    uri: str
    version: int
    files: tuple[str, ...]
    rows: int


def parquet_dataset(files: Sequence[str]) -> pads.Dataset:
    """A pyarrow dataset over exactly these data files (URLs or paths of one filesystem)."""
    filesystem, _ = (
        pa.fs.FileSystem.from_uri(files[0]) if "://" in files[0] else (pa.fs.LocalFileSystem(), "")
    )
    paths = [pa.fs.FileSystem.from_uri(f)[1] if "://" in f else f for f in files]
    return pads.dataset(paths, filesystem=filesystem, format="parquet")


def read_table(snapshot: TableSnapshot, columns: Sequence[str] | None = None) -> pa.Table:
    """The snapshot's rows (its files as listed in the Delta log), for tables small enough for memory."""
    if not snapshot.files:
        raise ValueError(f"table {snapshot.table} version {snapshot.version} has no data files")
    return parquet_dataset(snapshot.files).to_table(columns=list(columns) if columns else None)


def read_frame(snapshot: TableSnapshot) -> pd.DataFrame:
    """A small table's rows as pandas; an empty frame when the snapshot has no data files (a table
    that may legitimately be empty, such as gold/validation_pairs on a tiny log)."""
    return read_table(snapshot).to_pandas() if snapshot.files else pd.DataFrame()


@dataclass(frozen=True)
class SequenceFacts:
    """What training needs to know about gold/sequences before it starts."""

    train_rows: int
    positive_feedback: tuple[int, ...]  # feedback ids found at train target positions
    tier_where: np.ndarray  # each train target's relative position bin (0 = oldest)
    tier: np.ndarray  # its hard-negative tier


def sequence_facts(snapshot: TableSnapshot, bins: int = 20) -> SequenceFacts:
    """Counts and per-target arrays of the train rows, from flattened list columns (no row loop)."""
    table = read_table(snapshot, [SPLIT, "feedback_ids", "is_target", "negative_tiers"])
    train = table.filter(pc.equal(table[SPLIT], TRAIN))
    lengths = pc.list_value_length(train["is_target"]).to_numpy().astype(np.int64)
    target = pc.list_flatten(train["is_target"]).to_numpy() > 0
    feedback = pc.list_flatten(train["feedback_ids"]).to_numpy()
    tiers = pc.list_flatten(train["negative_tiers"]).to_numpy()
    index = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    where = np.minimum(index * bins // np.repeat(np.maximum(lengths, 1), lengths), bins - 1)
    return SequenceFacts(
        train_rows=train.num_rows,
        positive_feedback=tuple(int(f) for f in np.unique(feedback[target])),
        tier_where=where[target],
        tier=tiers[target].astype(np.int64),
    )


def pad_right(lists: Sequence[np.ndarray], width: int) -> np.ndarray:
    """(N, width) int64 from N integer arrays: each row's last `width` items, then zeros.

    Vectorised: one concatenate and one scatter, no per-row Python loop over items.
    """
    n = len(lists)
    out = np.zeros((n, width), dtype=np.int64)
    if n == 0:
        return out
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=n)
    if lengths.sum() == 0:
        return out
    flat = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists])
    kept = np.minimum(lengths, width)
    ends = np.cumsum(lengths)
    starts = ends - kept  # the last `kept` items of each row
    row = np.repeat(np.arange(n), kept)
    col = np.arange(kept.sum()) - np.repeat(np.cumsum(kept) - kept, kept)
    src = np.repeat(starts, kept) + col
    out[row, col] = flat[src]
    return out


def fixed_width(frame: pd.DataFrame, width: int, split: str) -> pd.DataFrame:
    """Petastorm transform: keep one split's rows and pad every list column to `width`."""
    rows = frame[frame[SPLIT] == split]
    padded = {c: list(pad_right(rows[c].to_numpy(), width)) for c in LIST_COLUMNS}
    return pd.DataFrame({USER_ID: rows[USER_ID].to_numpy(), **padded})


def to_batch(columns: dict[str, np.ndarray]) -> Batch:
    """A Batch from (N, W) arrays, trimmed to the longest row (padding beyond it is dead weight)."""
    tracks = columns["track_ids"]
    width = max(int((tracks != 0).sum(axis=1).max()) if len(tracks) else 1, 1)
    t = {k: torch.from_numpy(np.ascontiguousarray(v[:, :width], dtype=np.int64)) for k, v in columns.items()}
    return Batch(
        tracks=t["track_ids"],
        stations=t["station_ids"],
        feedback=t["feedback_ids"],
        targets=t["is_target"] > 0,
        negatives=t["negative_track_ids"],
        tiers=t["negative_tiers"],
    )


def user_shard(user_ids: np.ndarray, world: int) -> np.ndarray:
    """A stable shard number per user (crc32), for tables with fewer row groups than ranks."""
    return np.fromiter(
        (zlib.crc32(str(u).encode()) % world for u in user_ids), dtype=np.int64, count=len(user_ids)
    )


def row_groups(files: Sequence[str]) -> int:
    total = 0
    for f in files:
        filesystem, path = pa.fs.FileSystem.from_uri(f)
        with filesystem.open_input_file(path) as handle:
            total += pq.ParquetFile(handle).metadata.num_row_groups
    return total


class SequenceStream:
    """Training batches of one DDP rank: a Petastorm shard of gold/sequences, shuffled, endless.

    Each epoch yields exactly `steps` batches of `batch_size` rows, on every rank alike (DDP needs
    the same number of steps everywhere). It reads its shard from a fresh Petastorm reader seeded
    by (seed, epoch, pass), shuffles row groups and then rows in a buffer, and starts the shard
    again when it runs out. So epoch e is the same whether or not the run was resumed before it.
    Sharding is Petastorm's, by row group; a table with fewer row groups than ranks is sharded by
    a hash of user_id instead (each rank then reads every row group and keeps its users).
    """

    def __init__(
        self,
        files: Sequence[str],
        *,
        batch_size: int,
        steps: int,
        max_length: int,
        seed: int,
        shuffle_buffer: int,
        rank: int = 0,
        world: int = 1,
        split: str = TRAIN,
    ) -> None:
        self.files = list(files)
        self.batch_size, self.steps, self.max_length = batch_size, steps, max_length
        self.seed, self.shuffle_buffer, self.rank, self.world, self.split = (
            seed,
            shuffle_buffer,
            rank,
            world,
            split,
        )
        self.by_row_group = world == 1 or row_groups(self.files) >= world
        if not self.by_row_group:
            log.info("gold/sequences has fewer row groups than %d ranks: sharding by user instead", world)
        self.rows_read = 0
        self.seconds = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def _reader_batches(self, seed: int) -> Iterator[dict[str, np.ndarray]]:
        from petastorm.transform import TransformSpec, edit_field

        width = self.max_length
        spec = TransformSpec(
            lambda frame: fixed_width(frame, width, self.split),
            edit_fields=[edit_field(c, np.int64, (width,), False) for c in LIST_COLUMNS],
            selected_fields=[USER_ID, *LIST_COLUMNS],
        )
        shard = (
            {"cur_shard": self.rank, "shard_count": self.world}
            if self.by_row_group and self.world > 1
            else {}
        )
        from petastorm import make_batch_reader

        with warnings.catch_warnings():
            # petastorm 0.12 goes through pyarrow's legacy dataset API, which warns on every file
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            reader = make_batch_reader(
                self.files,
                schema_fields=[USER_ID, SPLIT, *LIST_COLUMNS],
                reader_pool_type="dummy",  # pools cost more than they give on few cores (DESIGN.md)
                shuffle_row_groups=True,
                seed=seed,
                num_epochs=1,
                transform_spec=spec,
                **shard,
            )
            with reader:
                for part in reader:
                    columns = {c: getattr(part, c) for c in LIST_COLUMNS}
                    if not self.by_row_group and self.world > 1:
                        keep = user_shard(part.user_id, self.world) == self.rank
                        columns = {c: v[keep] for c, v in columns.items()}
                    if len(columns["track_ids"]):
                        yield columns

    def _rows(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        """Shuffled chunks of rows, passing over the shard as often as the epoch needs."""
        rng = np.random.default_rng([self.seed, epoch, self.rank])
        for turn in range(10**9):
            buffer: list[dict[str, np.ndarray]] = []
            size, seen = 0, 0
            for part in self._reader_batches(seed=(self.seed * 1_000_003 + epoch * 1_009 + turn) % 2**31):
                buffer.append(part)
                size += len(part["track_ids"])
                seen += len(part["track_ids"])
                if size >= self.shuffle_buffer:
                    yield self._shuffled(buffer, rng)
                    buffer, size = [], 0
            if buffer:
                yield self._shuffled(buffer, rng)
            if seen == 0:
                raise ValueError(
                    f"rank {self.rank} of {self.world} has no {self.split} rows in gold/sequences"
                )

    @staticmethod
    def _shuffled(parts: list[dict[str, np.ndarray]], rng: np.random.Generator) -> dict[str, np.ndarray]:
        joined = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
        order = rng.permutation(len(joined["track_ids"]))
        return {c: v[order] for c, v in joined.items()}

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """Exactly `steps` batches for this epoch; times the reading (rows_per_second)."""
        rows = self._rows(epoch)
        pending: dict[str, np.ndarray] | None = None
        for _ in range(self.steps):
            start = time.perf_counter()
            while pending is None or len(pending["track_ids"]) < self.batch_size:
                chunk = next(rows)
                pending = (
                    chunk if pending is None else {c: np.concatenate([pending[c], chunk[c]]) for c in chunk}
                )
            batch = {c: v[: self.batch_size] for c, v in pending.items()}
            pending = {c: v[self.batch_size :] for c, v in pending.items()}
            out = to_batch(batch)
            self.seconds += time.perf_counter() - start
            self.rows_read += out.rows
            yield out


def history_tensors(
    tracks: Sequence[np.ndarray],
    stations: Sequence[np.ndarray],
    feedback: Sequence[np.ndarray],
    query: np.ndarray,
    width: int,
) -> History:
    """A History from per-row id arrays (oldest first), keeping each row's last `width` plays."""
    longest = max((len(x) for x in tracks), default=0)
    w = max(min(width, longest), 1)
    return History(
        tracks=torch.from_numpy(pad_right(tracks, w)),
        stations=torch.from_numpy(pad_right(stations, w)),
        feedback=torch.from_numpy(pad_right(feedback, w)),
        query_station=torch.from_numpy(np.asarray(query, dtype=np.int64)),
    )
