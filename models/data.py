"""Delta snapshots into arrays and tensors: the tables read whole (pyarrow, by the snapshot's file
list), and the padding of scoring histories. The training stream is models/loader.py."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs
import torch

from downbeat.models.contract import SPLIT, TRAIN
from downbeat.models.network import History


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


@functools.lru_cache(maxsize=2)
def sequence_facts(snapshot: TableSnapshot, bins: int = 20) -> SequenceFacts:
    """Counts and per-target arrays of the train rows, from flattened list columns (no row loop).

    A snapshot never changes, so its facts are read once: an experiment checks every child's
    inputs before it trains any, on one snapshot."""
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
