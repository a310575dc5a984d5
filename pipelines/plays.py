"""silver/plays: sessions, derived skips and one feedback type per play."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.window import WindowSpec

from pipelines import schemas as S

MICROS = 1_000_000


def by_user() -> WindowSpec:
    """A user's events in time order; equal times are ordered by event_id so every run agrees."""
    return Window.partitionBy(S.USER_ID).orderBy(S.TS, S.EVENT_ID)


def micros_between(earlier: Column, later: Column) -> Column:
    return F.unix_micros(later) - F.unix_micros(earlier)


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
    starting less than `skip_seconds` later) > play. One shuffle: by user, sorted by time.
    """
    order = by_user()
    running = order.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    previous_ts = F.lag(S.TS).over(order)
    next_ts = F.lead(S.TS).over(order)
    starts = previous_ts.isNull() | (micros_between(previous_ts, F.col(S.TS)) > gap_minutes * 60 * MICROS)
    staged = events.select(
        *[F.col(c) for c in (S.USER_ID, S.TS, S.TRACK_ID, S.STATION_ID, S.FEEDBACK, S.MS_PLAYED, S.SOURCE)],
        F.col(S.EVENT_ID),
        starts.alias("_starts"),
        micros_between(F.col(S.TS), next_ts).alias("_to_next"),
        F.row_number().over(order).alias("_n"),
    )
    session_start = F.max(F.when(F.col("_starts"), F.col(S.TS))).over(running)
    first_n = F.max(F.when(F.col("_starts"), F.col("_n"))).over(running)
    threshold = skip_seconds * MICROS
    timed = F.col(S.SOURCE).isin(*timing_sources) if timing_sources else F.lit(False)
    skipped = (
        (F.col(S.FEEDBACK) == S.SKIP)
        | (F.col(S.MS_PLAYED) < skip_seconds * 1000)
        | (timed & (F.col("_to_next") < threshold))
    )
    feedback = (
        F.when(F.col(S.FEEDBACK) == S.DOWN, F.lit(S.DOWN))
        .when(F.col(S.FEEDBACK) == S.UP, F.lit(S.UP))
        .when(F.coalesce(skipped, F.lit(False)), F.lit(S.SKIP))
        .otherwise(F.lit(S.PLAY))
    )
    return staged.select(
        F.col(S.USER_ID),
        F.concat(
            F.col(S.USER_ID), F.lit("@"), F.date_format(session_start, "yyyyMMdd'T'HHmmss.SSSSSS")
        ).alias(S.SESSION_ID),
        (F.col("_n") - first_n).cast("int").alias(S.POSITION),
        F.col(S.TS),
        F.col(S.TRACK_ID),
        F.col(S.STATION_ID),
        feedback.alias(S.FEEDBACK),
        F.col(S.SOURCE),
        F.col(S.MS_PLAYED),
        F.col(S.EVENT_ID),
        F.to_date(F.col(S.TS)).alias(S.DATE),
    )
