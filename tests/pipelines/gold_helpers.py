"""Builders of silver/plays rows for the gold-table tests."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, SparkSession

from downbeat.pipelines import schemas as S
from downbeat.pipelines.settings import EvalSettings, SequenceSettings

DAY0 = dt.datetime(2024, 5, 1)
SEQ = SequenceSettings(max_length=200, validation_percent=10, play_is_positive="auto")
EVAL = EvalSettings(max_pairs_per_user=100, skip_is_negative="auto")


def at(day: int, minute: int = 0) -> dt.datetime:
    return DAY0 + dt.timedelta(days=day, minutes=minute)


def plays_frame(
    spark: SparkSession, rows: list[tuple], source: str = "events", session_per_day: bool = False
) -> DataFrame:
    """rows: (user, day, minute, track, station, feedback[, event_id]); ids default to row order.

    A user's plays are one session, or one a day with `session_per_day`."""
    full = []
    for i, row in enumerate(rows):
        user, day, minute, track, station, feedback = row[:6]
        event_id = row[6] if len(row) > 6 else f"e{i:03d}"
        ts = at(day, minute)
        session = f"{user}@{day}" if session_per_day else f"{user}@s"
        full.append((user, session, 0, ts, track, station, feedback, source, None, event_id, ts.date()))
    return spark.createDataFrame(full, S.PLAYS)
