"""silver/plays: sessions, derived skips and one feedback type per play."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.window import WindowSpec

from downbeat.pipelines import schemas as S
from downbeat.pipelines.by_user import group_start, starts, whole_users

MICROS = 1_000_000


def by_user() -> WindowSpec:
    """A user's events in time order; equal times are ordered by event_id so every run agrees."""
    return Window.partitionBy(S.USER_ID).orderBy(S.TS, S.EVENT_ID)


def plays(
    events: DataFrame,
    *,
    gap_minutes: int,
    skip_seconds: int,
    timing_sources: Sequence[str] = (),
) -> DataFrame:
    """One row per play (grain: event_id), from bronze/events columns.

    Sessions split where the time since the user's previous play exceeds `gap_minutes`, and
    nowhere else (not at midnight). Feedback precedence: explicit down > explicit up > skip (the
    source's flag, `ms_played` under `skip_seconds`, or, for `timing_sources`, the user's next play
    starting less than `skip_seconds` later) > play. A user's events are in (ts, event_id) order.

    One shuffle by user, a sort within each partition, and one vectorised pass over each user's
    sorted rows (`mapInArrow`): what window functions did row by row, at a third of the time.
    """
    staged = events.select(
        *[F.col(c) for c in (S.USER_ID, S.TS, S.TRACK_ID, S.STATION_ID, S.FEEDBACK, S.MS_PLAYED, S.SOURCE)],
        F.col(S.EVENT_ID),
    )
    rules = SessionRules(
        gap_micros=gap_minutes * 60 * MICROS,
        skip_micros=skip_seconds * MICROS,
        skip_ms=skip_seconds * 1000,
        timing_sources=tuple(timing_sources),
    )
    return (
        staged.repartition(S.USER_ID)
        .sortWithinPartitions(S.USER_ID, S.TS, S.EVENT_ID)
        .mapInArrow(functools.partial(_sessionized, rules=rules), S.PLAYS)
    )


@dataclass(frozen=True)
class SessionRules:
    gap_micros: int
    skip_micros: int
    skip_ms: int
    timing_sources: tuple[str, ...]


def _sessionized(batches: Iterable[pa.RecordBatch], *, rules: SessionRules) -> Iterator[pa.RecordBatch]:
    """mapInArrow body (runs on executors): rows sorted by (user, ts, event_id) -> silver/plays rows."""
    for table in whole_users(batches, S.USER_ID):
        yield _sessions(table, rules)


def _sessions(table: pa.Table, rules: SessionRules) -> pa.RecordBatch:
    """silver/plays rows of whole users, sorted by (user, ts, event_id). Vectorised."""
    n = len(table)
    users = table.column(S.USER_ID).combine_chunks()
    ts_column = table.column(S.TS).combine_chunks()
    ts = ts_column.cast(pa.int64()).to_numpy()
    index = np.arange(n)
    new_user = starts(users)
    gap = np.diff(ts, prepend=ts[0])
    opens = new_user | (gap > rules.gap_micros)
    first = group_start(opens)  # each row's session start
    last_of_user = np.append(new_user[1:], True)
    to_next = np.append(np.diff(ts), 0)

    feedback = table.column(S.FEEDBACK).combine_chunks()
    ms_played = table.column(S.MS_PLAYED).combine_chunks()

    def true(mask: pa.Array) -> np.ndarray:
        return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)

    skipped = true(pc.equal(feedback, S.SKIP)) | true(pc.less(ms_played, rules.skip_ms))
    if rules.timing_sources:
        timed = true(pc.is_in(table.column(S.SOURCE).combine_chunks(), pa.array(rules.timing_sources)))
        skipped |= timed & ~last_of_user & (to_next < rules.skip_micros)
    code = np.select(
        [true(pc.equal(feedback, S.DOWN)), true(pc.equal(feedback, S.UP)), skipped],
        [0, 1, 2],
        default=3,
    )
    kinds = pa.array([S.DOWN, S.UP, S.SKIP, S.PLAY])
    session_start = pc.strftime(ts_column.take(pa.array(first)), format="%Y%m%dT%H%M%S")
    return pa.RecordBatch.from_arrays(
        [
            users,
            pc.binary_join_element_wise(users, pa.scalar("@"), session_start, ""),
            pa.array(index - first, pa.int32()),
            ts_column,
            table.column(S.TRACK_ID).combine_chunks(),
            table.column(S.STATION_ID).combine_chunks(),
            kinds.take(pa.array(code)),
            table.column(S.SOURCE).combine_chunks(),
            ms_played,
            table.column(S.EVENT_ID).combine_chunks(),
            ts_column.cast(pa.date32()),
        ],
        names=S.PLAYS.fieldNames(),
    )
