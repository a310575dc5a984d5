"""Small gold/sequences tables written as real Delta tables (delta-rs), without Spark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from downbeat.models.contract import (
    DOWN_TRACK_ID,
    DOWN_TRACK_IDX,
    HISTORY_FEEDBACK_IDS,
    HISTORY_LENGTH,
    HISTORY_STATION_IDS,
    HISTORY_TRACK_IDS,
    IS_POSITIVE,
    STATION_ID,
    STATION_IDX,
    TRACK_IDX,
    TRAINING_ARRAYS,
    TRAINING_DTYPES,
    UP_TRACK_ID,
    UP_TRACK_IDX,
    USER_ID,
)
from downbeat.models.data import TableSnapshot
from downbeat.models.validation import ValidationSet

UP, DOWN, SKIP = 1, 2, 3


def sequence_rows(users: int, seed: int = 0, n_tracks: int = 30, validation_every: int = 5) -> pa.Table:
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {
        c: []
        for c in (
            "user_id",
            "split",
            "length",
            "track_ids",
            "station_ids",
            "feedback_ids",
            "is_target",
            "negative_track_ids",
            "negative_tiers",
        )
    }
    for u in range(users):
        n = int(rng.integers(3, 25))
        tracks = rng.integers(1, n_tracks + 1, n)
        feedback = rng.choice([UP, DOWN, SKIP], n)
        feedback[-1] = UP
        target = (feedback == UP).astype(np.int32)
        negative = np.where(target > 0, (tracks % n_tracks) + 1, 0)
        rows["user_id"].append(f"u{u:03d}")
        rows["split"].append("validation" if u % validation_every == 0 else "train")
        rows["length"].append(n)
        rows["track_ids"].append(tracks.tolist())
        rows["station_ids"].append(rng.integers(0, 3, n).tolist())
        rows["feedback_ids"].append(feedback.tolist())
        rows["is_target"].append(target.tolist())
        rows["negative_track_ids"].append(negative.tolist())
        rows["negative_tiers"].append(np.where(target > 0, 5, 0).tolist())
    ints = pa.list_(pa.int32())
    schema = pa.schema(
        [
            ("user_id", pa.string()),
            ("split", pa.string()),
            ("length", pa.int32()),
            ("track_ids", ints),
            ("station_ids", ints),
            ("feedback_ids", ints),
            ("is_target", ints),
            ("negative_track_ids", ints),
            ("negative_tiers", ints),
        ]
    )
    return pa.table(rows, schema=schema)


def write_sequences(path: Path, table: pa.Table, files: int = 1) -> TableSnapshot:
    """One Delta commit of `files` data files (one row group each)."""
    step = -(-len(table) // files)
    for i in range(files):
        write_deltalake(str(path), table.slice(i * step, step), mode="append" if i else "overwrite")
    delta = DeltaTable(str(path))
    uris = tuple(f if "://" in f else Path(f).as_uri() for f in delta.file_uris())
    return TableSnapshot("gold/sequences", str(path), delta.version(), uris, len(table))


def training_rows(table: pa.Table, width: int) -> pa.Table:
    """gold/training_sequences rows of a sequence_rows() table, built row by row (a reference
    independent of the pipeline's vectorised code): train rows only, each array's last `width`
    items after zeros, as bytes of the contract's dtypes."""
    out: dict[str, list] = {USER_ID: [], "length": [], **{c: [] for c in TRAINING_ARRAYS}}
    for row in table.to_pylist():
        if row["split"] != "train":
            continue
        out[USER_ID].append(row[USER_ID])
        out["length"].append(min(len(row["track_ids"]), width))
        for c in TRAINING_ARRAYS:
            kept = row[c][-width:]
            padded = [0] * (width - len(kept)) + kept
            out[c].append(np.asarray(padded, dtype=TRAINING_DTYPES[c]).tobytes())
    schema = pa.schema(
        [(USER_ID, pa.string()), ("length", pa.int32()), *((c, pa.binary()) for c in TRAINING_ARRAYS)]
    )
    return pa.table(out, schema=schema)


def write_training(path: Path, table: pa.Table, width: int = 32, files: int = 1) -> TableSnapshot:
    """gold/training_sequences of a sequence_rows() table: one Delta commit of `files` files."""
    rows = training_rows(table, width)
    snapshot = write_sequences(path, rows, files=files)
    return TableSnapshot("gold/training_sequences", snapshot.uri, snapshot.version, snapshot.files, len(rows))


def validation_set(table: pa.Table, n_tracks: int) -> ValidationSet:
    """Validation frames from the validation users of a sequence_rows() table: each user's history
    is the row without its last item; the pairs put the last (up) track against every rejected
    track of the row on the same station (pair ids are the track numbers as text)."""
    pairs: dict[str, list] = {c: [] for c in (USER_ID, STATION_ID, UP_TRACK_ID, DOWN_TRACK_ID)}
    pairs |= {STATION_IDX: [], UP_TRACK_IDX: [], DOWN_TRACK_IDX: []}
    histories: dict[str, list] = {
        c: []
        for c in (
            USER_ID,
            HISTORY_TRACK_IDS,
            HISTORY_STATION_IDS,
            HISTORY_FEEDBACK_IDS,
            HISTORY_LENGTH,
            TRACK_IDX,
            STATION_IDX,
            IS_POSITIVE,
        )
    }
    for row in table.to_pylist():
        if row["split"] != "validation":
            continue
        tracks, stations, feedback = row["track_ids"], row["station_ids"], row["feedback_ids"]
        histories[USER_ID].append(row["user_id"])
        histories[HISTORY_TRACK_IDS].append(np.asarray(tracks[:-1], np.int64))
        histories[HISTORY_STATION_IDS].append(np.asarray(stations[:-1], np.int64))
        histories[HISTORY_FEEDBACK_IDS].append(np.asarray(feedback[:-1], np.int64))
        histories[HISTORY_LENGTH].append(len(tracks) - 1)
        histories[TRACK_IDX].append(tracks[-1])  # the next-item target: the row's last (up) track
        histories[STATION_IDX].append(stations[-1])
        histories[IS_POSITIVE].append(True)
        for t, s, f in zip(tracks[:-1], stations[:-1], feedback[:-1], strict=True):
            if f in (DOWN, SKIP) and t != tracks[-1]:
                pairs[USER_ID].append(row["user_id"])
                pairs[STATION_ID].append(str(s))
                pairs[UP_TRACK_ID].append(str(tracks[-1]))
                pairs[DOWN_TRACK_ID].append(str(t))
                pairs[STATION_IDX].append(s)
                pairs[UP_TRACK_IDX].append(tracks[-1])
                pairs[DOWN_TRACK_IDX].append(t)
    return ValidationSet(pd.DataFrame(pairs), pd.DataFrame(histories), n_tracks)
