"""gold/hard_negatives: one hard negative per target position, by the UMAP'24 cascade.

Tiers, best first: a down the same UTC day on the same station; a skip the same day on the same
station; any later down; any later skip; else random (negative left null: drawn at training
time). Within a tier the candidate nearest in time wins (on a tie, the earlier one). Candidates
come from the history (before the cut-off) and never share the target's track.

One vectorised pass over each user's plays in time order (`mapInArrow`), no pairwise join and no
window function: "the nearest candidate before a row whose track differs from the row's" is a
forward fill of candidate indices. When the nearest candidate has the row's own track, the answer
is the candidate before that candidate's run of equal tracks, which each candidate carries. Looking
ahead is looking back over the reversed rows; same-day tiers do the same within (day, station)
groups, reached by one stable re-ordering of the user's rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from downbeat.pipelines import schemas as S
from downbeat.pipelines.by_user import group_start, starts, whole_users
from downbeat.pipelines.split import IS_POSITIVE, USER_POSITION

NONE = -1


def with_hard_negative(history: DataFrame) -> DataFrame:
    """Adds NEGATIVE_TRACK_ID, NEGATIVE_TS and TIER to split.history() rows with IS_POSITIVE.

    Target rows (positives) get their cascade's pick (tier 1..5; 5 = random, negative null); other
    rows get tier 0 and nulls. history() numbers each user's plays with a window partitioned by
    user, so its rows reach this pass grouped by user and in time order: no shuffle of its own.
    """
    schema = (
        T.StructType(list(history.schema.fields))
        .add(S.NEGATIVE_TRACK_ID, T.StringType(), True)
        .add(S.NEGATIVE_TS, T.TimestampType(), True)
        .add(S.TIER, T.IntegerType(), False)
    )
    # the order history() numbered the rows in: Spark drops this sort as already done
    return history.sortWithinPartitions(S.USER_ID, S.TS, S.EVENT_ID).mapInArrow(_cascade_batches, schema)


def _cascade_batches(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body (runs on executors)."""
    for table in whole_users(batches, S.USER_ID):
        yield from cascade(table).to_batches()


def cascade(table: pa.Table) -> pa.Table:
    """`table` (whole users, each in USER_POSITION order) with the three cascade columns added."""
    n = len(table)
    user_first = starts(table.column(S.USER_ID).combine_chunks())
    positions = table.column(USER_POSITION).to_numpy()
    expected = np.arange(n) - group_start(user_first)
    if not np.array_equal(positions, expected):
        raise ValueError("with_hard_negative() needs split.history() rows, grouped by user in time order")
    ts = table.column(S.TS).combine_chunks()
    micros = ts.cast(pa.int64()).to_numpy()
    tracks = table.column(S.TRACK_ID).combine_chunks()
    track = pc.dictionary_encode(tracks).indices.to_numpy(zero_copy_only=False).astype(np.int64)
    feedback = table.column(S.FEEDBACK).combine_chunks()
    down = pc.fill_null(pc.equal(feedback, S.DOWN), False).to_numpy(zero_copy_only=False)
    skip = pc.fill_null(pc.equal(feedback, S.SKIP), False).to_numpy(zero_copy_only=False)
    positive = pc.fill_null(table.column(IS_POSITIVE).combine_chunks(), False).to_numpy(zero_copy_only=False)

    # Same-day groups: (user, date, station), in time order within each (a stable re-ordering).
    station = pc.dictionary_encode(table.column(S.STATION_ID).combine_chunks())
    station_code = pc.fill_null(station.indices, NONE).to_numpy(zero_copy_only=False).astype(np.int64)
    day = table.column(S.DATE).combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False)
    user_code = np.cumsum(user_first)
    order = np.lexsort((np.arange(n), station_code, day, user_code))
    in_order = (user_code[order], day[order], station_code[order])
    day_first = np.ones(n, dtype=bool)
    if n > 1:
        day_first[1:] = np.any([k[1:] != k[:-1] for k in in_order], axis=0)

    def same_day(candidate: np.ndarray, *, ahead: bool) -> np.ndarray:
        found = _nearest(day_first, candidate[order], track[order], ahead=ahead)
        out = np.full(n, NONE)
        out[order] = np.where(found >= 0, order[np.maximum(found, 0)], NONE)
        return out

    def nearer(before: np.ndarray, after: np.ndarray) -> np.ndarray:
        before_gap = micros - micros[np.maximum(before, 0)]
        after_gap = micros[np.maximum(after, 0)] - micros
        take_after = (before < 0) | ((after >= 0) & (after_gap < before_gap))
        return np.where(take_after, after, before)

    tiers = [
        (S.TIER_SAME_DAY_DOWN, nearer(same_day(down, ahead=False), same_day(down, ahead=True))),
        (S.TIER_SAME_DAY_SKIP, nearer(same_day(skip, ahead=False), same_day(skip, ahead=True))),
        (S.TIER_LATER_DOWN, _nearest(user_first, down, track, ahead=True)),
        (S.TIER_LATER_SKIP, _nearest(user_first, skip, track, ahead=True)),
    ]
    tier = np.full(n, S.TIER_RANDOM, dtype=np.int32)
    negative = np.full(n, NONE)
    for level, found in reversed(tiers):  # the best tier found is written last
        hit = found >= 0
        tier[hit], negative[hit] = level, found[hit]
    tier[~positive] = 0
    negative[~positive] = NONE
    picked = pa.array(np.maximum(negative, 0), mask=negative < 0)
    return (
        table.append_column(S.NEGATIVE_TRACK_ID, pc.take(tracks, picked))
        .append_column(S.NEGATIVE_TS, pc.take(ts, picked))
        .append_column(S.TIER, pa.array(tier, pa.int32()))
    )


def _nearest(first: np.ndarray, candidate: np.ndarray, track: np.ndarray, *, ahead: bool) -> np.ndarray:
    """For each row, the index of the nearest candidate before it (after it, `ahead`) in its group
    whose track differs from the row's, or NONE. Groups are the runs that `first` opens."""
    if ahead:  # after, in order = before, in reverse order
        n = len(first)
        reverse_first = np.append(first[1:], True)[::-1]
        found = _nearest(reverse_first, candidate[::-1], track[::-1], ahead=False)[::-1]
        return np.where(found >= 0, n - 1 - found, NONE)
    n = len(first)
    index = np.arange(n)
    up_to = np.maximum.accumulate(np.where(candidate, index, NONE))  # last candidate at or before
    before = np.append(NONE, up_to[:-1])
    before[before < group_start(first)] = NONE  # not from an earlier group
    other_track = (before < 0) | (track[np.maximum(before, 0)] != track)
    # A candidate opens a run when the candidate before it has another track; every candidate
    # carries the candidate before its run (that one's track differs from the whole run's).
    run_first = np.maximum.accumulate(np.where(candidate & other_track, index, NONE))
    beyond_run = before[np.maximum(run_first, 0)]
    return np.where(other_track, before, beyond_run[np.maximum(before, 0)])


def hard_negatives(annotated: DataFrame) -> DataFrame:
    """One row per target position (user_id, position), from with_hard_negative() rows."""
    names = F.create_map(*[F.lit(x) for t, n in S.TIER_NAMES.items() for x in (t, n)])
    return annotated.where(F.col(IS_POSITIVE)).select(
        F.col(S.USER_ID),
        F.col(USER_POSITION).alias(S.POSITION),
        F.col(S.TRACK_ID).alias(S.TARGET_TRACK_ID),
        F.col(S.TS).alias(S.TARGET_TS),
        F.col(S.STATION_ID),
        F.col(S.NEGATIVE_TRACK_ID),
        F.col(S.NEGATIVE_TS),
        F.col(S.TIER),
        names[F.col(S.TIER)].alias(S.TIER_NAME),
    )
