"""silver/plays from bronze/events: in full, or for a range of dates with the context it needs.

A range rebuild replaces silver/plays' date partitions [start, end] with plays computed from the
events of [start - 1 day, end + 1 day]. That is exact unless a session crosses the context's edge:
`range_conflicts` finds such sessions (both ways), and the caller rebuilds in full instead.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from downbeat.pipelines import schemas as S
from downbeat.pipelines.plays import plays
from downbeat.pipelines.settings import FeatureSettings
from downbeat.pipelines.times import day_start, ts_literal

# A change on a date can move the session or the skip of a play on the next or previous date.
NEIGHBOUR = dt.timedelta(days=1)


def silver_plays(events: DataFrame, features: FeatureSettings) -> DataFrame:
    """silver/plays rows from bronze/events rows, with the configured session and skip rules."""
    return plays(
        events,
        gap_minutes=features.sessions.gap_minutes,
        skip_seconds=features.skips.threshold_seconds,
        timing_sources=features.skips.timing_sources,
    )


def day_of_context_suffices(features: FeatureSettings) -> bool:
    """A day of context on each side is enough only while a session gap and the skip rule's look-ahead
    are shorter than a day: with longer ones a play can reach past the neighbour day."""
    return features.sessions.gap_minutes < 24 * 60 and features.skips.threshold_seconds < 24 * 3600


def range_context(events: DataFrame, start: dt.date, end: dt.date) -> DataFrame:
    """The bronze/events rows a rebuild of dates [start, end] computes from: a day more each side."""
    return events.where(F.col(S.DATE).between(F.lit(start - NEIGHBOUR), F.lit(end + NEIGHBOUR)))


def in_range(computed: DataFrame, start: dt.date, end: dt.date) -> DataFrame:
    """The computed silver/plays rows of dates [start, end]: what replaces those partitions."""
    return computed.where(F.col(S.DATE).between(F.lit(start), F.lit(end)))


def range_conflicts(
    computed: DataFrame, existing: DataFrame, start: dt.date, end: dt.date, gap_minutes: int
) -> DataFrame:
    """Session ids that make a rebuild of [start, end] alone inexact; empty when it is exact.

    computed: silver_plays(range_context(...)); existing: silver/plays as it is now.
    - Backward: a session of the range whose first play falls in the context's first `gap_minutes`
      may have begun before the context, so its id and positions here would be too late.
    - Forward: where the plays of the day after the range differ from silver/plays' in session id
      or position, a session runs out of the range with a changed start or count, and every later
      play of it (not rewritten) would keep the stale id or position.
    """
    first_day = start - NEIGHBOUR
    early = day_start(first_day) + dt.timedelta(minutes=gap_minutes)
    early_starts = computed.where((F.col(S.POSITION) == 0) & (F.col(S.TS) <= ts_literal(early)))
    backward = in_range(computed, start, end).join(
        early_starts.select(S.SESSION_ID), S.SESSION_ID, "left_semi"
    )
    after = end + NEIGHBOUR
    keys = [S.EVENT_ID, S.SESSION_ID, S.POSITION]
    forward = (
        computed.where(F.col(S.DATE) == F.lit(after))
        .select(*keys)
        .join(existing.where(F.col(S.DATE) == F.lit(after)).select(*keys), keys, "left_anti")
    )
    return backward.select(S.SESSION_ID).unionByName(forward.select(S.SESSION_ID))
