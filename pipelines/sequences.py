"""gold/sequences: one training or validation row per user (or session), as aligned integer arrays."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from downbeat.pipelines import schemas as S
from downbeat.pipelines.split import IS_POSITIVE, USER_POSITION, Cut, cut_column, split_of
from downbeat.pipelines.vocabulary import with_station_index, with_track_index

NEGATIVE_IDX = "_negative_idx"
# The commit tag of gold/sequences and gold/training_sequences naming their row (sequences.unit), so
# that training refuses rows of another unit than its configuration's.
UNIT_TAG = "downbeat.sequences_unit"


def feedback_id(feedback: Column) -> Column:
    """The integer code of a feedback type (schemas.FEEDBACK_IDS)."""
    codes = F.create_map(*[F.lit(x) for k, v in S.FEEDBACK_IDS.items() for x in (k, v)])
    return codes[feedback].cast("int")


def _window_to_last_positive(
    annotated: DataFrame, unit: list[str], by_session: bool, max_length: int, min_events: int
) -> DataFrame:
    """Each unit's (user's or session's) last `max_length` plays up to and including its last
    positive; units with fewer than `min_events` plays left out."""
    rows = annotated
    position = F.col(USER_POSITION)
    if by_session:  # positions within the session (a source's sessions may interleave in time)
        rows = rows.withColumn("_position", F.row_number().over(Window.partitionBy(*unit).orderBy(position)))
        position = F.col("_position")
    last_positive = F.max(F.when(F.col(IS_POSITIVE), position)).over(Window.partitionBy(*unit))
    with_last = rows.withColumn("_last", last_positive)
    if min_events > 1:
        events = F.count(F.lit(1)).over(Window.partitionBy(*unit))
        with_last = with_last.withColumn("_events", events).where(F.col("_events") >= min_events)
    return with_last.where((position <= F.col("_last")) & (position > F.col("_last") - max_length))


def sequences(
    annotated: DataFrame,
    tracks: DataFrame,
    stations: DataFrame,
    *,
    cutoff: Cut,
    max_length: int,
    validation_percent: int,
    by_session: bool = False,
    min_events: int = 1,
) -> DataFrame:
    """One row per user with a positive before the cut-off (grain: user_id), or with `by_session`
    one per session with a positive and at least `min_events` plays before it (grain: user_id,
    first_ts; RecSys'24's session-level data).

    Needs hard_negatives.with_hard_negative() rows. The row holds the user's (session's) last
    `max_length` plays up to and including the last positive, oldest first: track, station and
    feedback ids, whether each position is a target, and its hard negative's track id (0 = none)
    and tier. Hard negatives stay the user's: a session row's may come from another session.
    """
    unit = [S.USER_ID, S.SESSION_ID] if by_session else [S.USER_ID]
    kept = (
        _window_to_last_positive(annotated, unit, by_session, max_length, min_events)
        .transform(lambda df: with_track_index(df, tracks, column=S.TRACK_ID, as_=S.TRACK_IDX))
        .transform(lambda df: with_track_index(df, tracks, column=S.NEGATIVE_TRACK_ID, as_=NEGATIVE_IDX))
        .transform(lambda df: with_station_index(df, stations))
    )
    item = F.struct(
        F.col(USER_POSITION).alias("p"),
        F.col(S.TRACK_IDX).alias("track"),
        F.col(S.STATION_IDX).alias("station"),
        feedback_id(F.col(S.FEEDBACK)).alias("feedback"),
        F.col(IS_POSITIVE).cast("int").alias("target"),
        F.col(NEGATIVE_IDX).alias("negative"),
        F.col(S.TIER).alias("tier"),
    )
    rows = kept.groupBy(*unit).agg(
        F.array_sort(F.collect_list(item)).alias("_items"),
        F.min(S.TS).alias(S.FIRST_TS),
        F.max(S.TS).alias(S.LAST_TS),
        F.max(cut_column(cutoff)).alias("_cutoff"),  # one value per user: a time, or the user's own
    )
    items = F.col("_items")
    return rows.select(
        F.col(S.USER_ID),
        split_of(F.col(S.USER_ID), validation_percent).alias(S.SPLIT),
        F.size(items).cast("int").alias(S.LENGTH),
        F.transform(items, lambda x: x["track"]).alias(S.TRACK_IDS),
        F.transform(items, lambda x: x["station"]).alias(S.STATION_IDS),
        F.transform(items, lambda x: x["feedback"]).alias(S.FEEDBACK_IDS_COL),
        F.transform(items, lambda x: x["target"]).alias(S.TARGET_MASK),
        F.transform(items, lambda x: x["negative"]).alias(S.NEGATIVE_TRACK_IDS),
        F.transform(items, lambda x: x["tier"]).alias(S.NEGATIVE_TIERS),
        F.col(S.FIRST_TS),
        F.col(S.LAST_TS),
        F.col("_cutoff").alias(S.CUTOFF_TS),
    )


def training_sequences(sequences_df: DataFrame, *, width: int, partitions: int) -> DataFrame:
    """gold/training_sequences: the train rows of gold/sequences as the loader streams them (grain: user_id).

    Each array becomes a binary column of `width` values (contract.TRAINING_DTYPES: int32 ids,
    one-byte codes), left-padded with 0 and
    keeping a row's most recent `width` items, so that a reader turns a whole row group into one
    (rows, width) array without touching a row. `partitions` files of one row group each (a
    Petastorm shard is a row group), rows sorted by user (and a user's sessions by time) within
    each: the same input writes the same files.
    """
    train = sequences_df.where(F.col(S.SPLIT) == S.TRAIN).select(
        S.USER_ID, S.FIRST_TS, S.LAST_TS, *S.SEQUENCE_ARRAYS
    )
    return (
        train.repartition(partitions, S.USER_ID)
        .sortWithinPartitions(S.USER_ID, S.FIRST_TS, S.LAST_TS, S.TRACK_IDS)
        .mapInArrow(functools.partial(_fixed_width_batches, width=width), S.TRAINING_SEQUENCES)
    )


def _fixed_width_batches(batches: Iterable[pa.RecordBatch], *, width: int) -> Iterator[pa.RecordBatch]:
    """mapInArrow body (runs on executors): list columns -> left-padded fixed-width binary columns."""
    for batch in batches:
        columns = {
            name: left_padded(batch.column(name), width, S.TRAINING_DTYPES[name])
            for name in S.SEQUENCE_ARRAYS
        }
        lengths = pc.min_element_wise(pc.list_value_length(batch.column(S.TRACK_IDS)), pa.scalar(width))
        yield pa.RecordBatch.from_arrays(
            [batch.column(S.USER_ID), lengths.cast(pa.int32()), *(_binary(a) for a in columns.values())],
            names=[S.USER_ID, S.LENGTH, *columns],
        )


def left_padded(column: pa.ListArray, width: int, dtype: str = "<i4") -> np.ndarray:
    """(rows, width) of `dtype`: each row's last `width` items, right-aligned after zeros. Vectorised."""
    values = column.values.fill_null(0).to_numpy().astype(dtype, copy=False)
    offsets = column.offsets.to_numpy()  # into the unsliced `values`, as `column` may be a slice
    ends = offsets[1:].astype(np.int64)
    kept = np.minimum(ends - offsets[:-1], width)
    out = np.zeros((len(column), width), dtype=dtype)
    if kept.sum() == 0:
        return out
    within = np.arange(kept.sum()) - np.repeat(np.cumsum(kept) - kept, kept)  # 0..kept-1 per row
    rows = np.repeat(np.arange(len(column)), kept)
    out[rows, np.repeat(width - kept, kept) + within] = values[np.repeat(ends - kept, kept) + within]
    return out


def _binary(array: np.ndarray) -> pa.BinaryArray:
    """One binary value per row of a C-contiguous (rows, width) array, without a copy."""
    rows, size = array.shape[0], array.shape[1] * array.itemsize
    if rows * size >= 2**31:
        raise ValueError(
            f"an Arrow batch of {rows} rows of {size} bytes passes binary's 2 GiB: smaller batches"
        )
    offsets = pa.array(np.arange(rows + 1, dtype=np.int64) * size, pa.int32())
    return pa.BinaryArray.from_buffers(
        pa.binary(), rows, [None, offsets.buffers()[1], pa.py_buffer(np.ascontiguousarray(array))]
    )
