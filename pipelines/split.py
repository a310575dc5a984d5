"""The time split every gold table shares, the user split, and which plays count as targets."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipelines import schemas as S
from pipelines.errors import InputError
from pipelines.plays import by_user
from pipelines.settings import EvalSettings, SequenceSettings, SplitSettings, When
from pipelines.times import day_start, ts_literal, utc

IS_POSITIVE = "_is_positive"
IS_NEGATIVE = "_is_negative"
USER_POSITION = "_user_position"


def check_split(settings: SplitSettings) -> None:
    """Bad input (exit 2) naming the key when the split settings cannot be used; a build calls it
    before it writes anything."""
    if settings.cutoff_date is not None:
        try:
            dt.date.fromisoformat(settings.cutoff_date)
        except ValueError:
            raise InputError(
                f"config key 'split.cutoff_date' must be YYYY-MM-DD, got {settings.cutoff_date!r}"
            ) from None
    elif settings.test_days < 1:
        raise InputError(f"config key 'split.test_days' must be at least 1, got {settings.test_days}")
    if settings.validation_days < 1:
        raise InputError(
            f"config key 'split.validation_days' must be at least 1, got {settings.validation_days}"
        )


def check_sequences(settings: SequenceSettings) -> None:
    """Bad input (exit 2) naming the key when the sequence settings cannot be used."""
    for key in ("max_length", "session_max_length", "session_min_events"):
        if getattr(settings, key) < 1:
            raise InputError(f"config key 'sequences.{key}' must be at least 1, got {getattr(settings, key)}")
    if not 0 <= settings.validation_percent <= 100:
        raise InputError(
            f"config key 'sequences.validation_percent' must be 0 to 100, got {settings.validation_percent}"
        )


def cutoff(last_ts: dt.datetime, settings: SplitSettings) -> dt.datetime:
    """Start of the test period (UTC-aware): `cutoff_date`, else the UTC day `test_days - 1` days
    before the last play's UTC day. A naive `last_ts` is UTC (pipelines.times)."""
    check_split(settings)
    if settings.cutoff_date is not None:
        day = dt.date.fromisoformat(settings.cutoff_date)
    else:
        day = utc(last_ts).date() - dt.timedelta(days=settings.test_days - 1)
    return day_start(day)


def validation_cutoff(cutoff_ts: dt.datetime, settings: SplitSettings) -> dt.datetime:
    """Start of the validation period (UTC-aware): `validation_days` days before the test cut-off."""
    check_split(settings)
    return utc(cutoff_ts) - dt.timedelta(days=settings.validation_days)


def split_of(user_id: Column, validation_percent: int) -> Column:
    """'validation' for `validation_percent` of users by a stable hash of the id, else 'train'."""
    bucket = F.conv(F.substring(F.sha2(user_id, 256), 1, 8), 16, 10).cast("long") % 100
    return F.when(bucket < validation_percent, F.lit(S.VALIDATION)).otherwise(F.lit(S.TRAIN))


def _applies(when: When, source_lacks_it: Column) -> Column:
    if when == "always":
        return F.lit(True)
    if when == "never":
        return F.lit(False)
    return source_lacks_it


def with_roles(plays: DataFrame, sequences: SequenceSettings, evaluation: EvalSettings) -> DataFrame:
    """Adds IS_POSITIVE (a target) and IS_NEGATIVE (the down side of an eval pair) to silver/plays rows.

    `auto` rules look at the whole source: plays are positives for sources with no up at all,
    skips are negatives for sources with no down at all.
    """
    per_source = plays.groupBy(S.SOURCE).agg(
        F.max((F.col(S.FEEDBACK) == S.UP).cast("int")).alias("_has_up"),
        F.max((F.col(S.FEEDBACK) == S.DOWN).cast("int")).alias("_has_down"),
    )
    feedback = F.col(S.FEEDBACK)
    positive = (feedback == S.UP) | (
        (feedback == S.PLAY) & _applies(sequences.play_is_positive, F.col("_has_up") == 0)
    )
    negative = (feedback == S.DOWN) | (
        (feedback == S.SKIP) & _applies(evaluation.skip_is_negative, F.col("_has_down") == 0)
    )
    return (
        plays.join(F.broadcast(per_source), S.SOURCE)
        .withColumn(IS_POSITIVE, positive)
        .withColumn(IS_NEGATIVE, negative)
        .drop("_has_up", "_has_down")
    )


def history(plays: DataFrame, cutoff_ts: dt.datetime) -> DataFrame:
    """Plays before the cut-off with USER_POSITION: 0.. in the user's time order."""
    return plays.where(F.col(S.TS) < ts_literal(cutoff_ts)).withColumn(
        USER_POSITION, (F.row_number().over(by_user()) - 1).cast("int")
    )


def in_test_period(plays: DataFrame, cutoff_ts: dt.datetime) -> DataFrame:
    """Plays at or after the cut-off."""
    return plays.where(F.col(S.TS) >= ts_literal(cutoff_ts))


def validation_users(plays: DataFrame, validation_percent: int) -> DataFrame:
    """The plays of validation users (split_of), the users whose sequences are never trained on."""
    return plays.where(split_of(F.col(S.USER_ID), validation_percent) == F.lit(S.VALIDATION))


def in_validation_period(plays: DataFrame, start: dt.datetime, cutoff_ts: dt.datetime) -> DataFrame:
    """Plays from the validation cut-off `start` up to (not including) the test cut-off."""
    return plays.where((F.col(S.TS) >= ts_literal(start)) & (F.col(S.TS) < ts_literal(cutoff_ts)))
