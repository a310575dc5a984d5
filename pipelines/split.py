"""The split every gold table shares (a time cut-off, or leave-one-out), the user split, and which
plays count as targets, negatives and seen tracks."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from downbeat.pipelines import schemas as S
from downbeat.pipelines.errors import InputError
from downbeat.pipelines.plays import by_user
from downbeat.pipelines.settings import EvalSettings, SequenceSettings, SplitSettings, When
from downbeat.pipelines.times import day_start, ts_literal, utc

IS_POSITIVE = "_is_positive"
IS_NEGATIVE = "_is_negative"
SEEN_EXCLUDED = "_seen_excluded"  # a play whose track the user's next-item rankings leave out
USER_POSITION = "_user_position"
TEST_CUTOFF, VALIDATION_CUTOFF = "_test_cutoff", "_validation_cutoff"  # leave-one-out: per user
LEAVE_ONE_OUT_MIN_PLAYS = 3  # a training play, a validation target and a test target
VALIDATION_USER_PERCENT = 50  # temporal_users: the share of the users after the cut-off who validate
Cut = dt.datetime | Column  # a cut-off: one time for every user, or a per-row column


def cut_column(cut: Cut) -> Column:
    """A cut-off as a column: a time's literal, or the per-row column itself."""
    return cut if isinstance(cut, Column) else ts_literal(cut)


def check_split(settings: SplitSettings) -> None:
    """Bad input (exit 2) naming the key when the split settings cannot be used; a build calls it
    before it writes anything."""
    if settings.cutoff_quantile is not None:
        if settings.cutoff_date is not None:
            raise InputError("config keys 'split.cutoff_date' and 'split.cutoff_quantile' exclude each other")
        if not 0.0 < settings.cutoff_quantile < 1.0:
            raise InputError(
                f"config key 'split.cutoff_quantile' must be between 0 and 1, got {settings.cutoff_quantile}"
            )
    elif settings.cutoff_date is not None:
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


def cutoff(
    last_ts: dt.datetime, settings: SplitSettings, quantile_ts: dt.datetime | None = None
) -> dt.datetime:
    """Start of the test period (UTC-aware): the `cutoff_quantile` of play times (`quantile_ts`,
    which the caller measures), else `cutoff_date`, else the UTC day `test_days - 1` days before the
    last play's UTC day. A naive time is UTC (pipelines.times)."""
    check_split(settings)
    if settings.cutoff_quantile is not None:
        if quantile_ts is None:
            raise ValueError("split.cutoff_quantile is set: pass the quantile's time")
        return utc(quantile_ts)
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


def seen_excluded(evaluation: EvalSettings) -> Column:
    """Of a silver/plays row: whether its track leaves the user's later rankings (`eval.exclude_seen`;
    `auto`: plays of the `seen_once_sources`, whose items are consumed once). Evaluation and
    `recommend` read the same rule."""
    if evaluation.exclude_seen == "auto":
        return F.col(S.SOURCE).isin(list(evaluation.seen_once_sources))
    return F.lit(bool(evaluation.exclude_seen))


def with_roles(plays: DataFrame, sequences: SequenceSettings, evaluation: EvalSettings) -> DataFrame:
    """Adds IS_POSITIVE (a target), IS_NEGATIVE (the down side of an eval pair) and SEEN_EXCLUDED (the
    track leaves the user's later next-item rankings) to silver/plays rows.

    `auto` rules look at the whole source: plays are positives for sources with no up at all,
    skips are negatives for sources with no down at all, seen tracks are excluded for the
    `seen_once_sources`.
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
        .withColumn(SEEN_EXCLUDED, seen_excluded(evaluation))
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


@dataclass(frozen=True)
class Periods:
    """Which plays each gold table is built from, under one protocol. Histories carry USER_POSITION.

    training: the plays training rows and hard negatives come from (`validation_percent` of users
    by hash are held out of training: 0 under leave-one-out, where every user trains on the plays
    before their validation target). test_history None: the training plays are the test histories.
    Cut-offs are each row's first time it may not see: a time, or a per-row column.
    """

    training: DataFrame
    training_cutoff: Cut
    test_history: DataFrame | None
    test_targets: DataFrame
    test_cutoff: Cut
    validation_history: DataFrame | None  # None: the training plays
    validation_targets: DataFrame
    validation_cutoff: Cut
    validation_percent: int


def temporal(
    roles: DataFrame, cutoff_ts: dt.datetime, split: SplitSettings, validation_percent: int
) -> Periods:
    """One cut-off in time: plays before it train and are the test histories, plays from it are the
    test targets; validation users' plays in the `validation_days` before it are their targets."""
    validation_start = validation_cutoff(cutoff_ts, split)
    validating = validation_users(roles, validation_percent)
    return Periods(
        training=history(roles, cutoff_ts),
        training_cutoff=cutoff_ts,
        test_history=None,
        test_targets=in_test_period(roles, cutoff_ts),
        test_cutoff=cutoff_ts,
        validation_history=history(validating, validation_start),
        validation_targets=in_validation_period(validating, validation_start, cutoff_ts),
        validation_cutoff=validation_start,
        validation_percent=validation_percent,
    )


def with_user_position(roles: DataFrame) -> DataFrame:
    """USER_POSITION (0.. in the user's (ts, event_id) order) and `_plays` (the user's play count)."""
    return roles.withColumn(USER_POSITION, (F.row_number().over(by_user()) - 1).cast("int")).withColumn(
        "_plays", F.count(F.lit(1)).over(Window.partitionBy(S.USER_ID))
    )


def temporal_users(roles: DataFrame, cutoff_ts: dt.datetime) -> Periods:
    """PNFRec's split (RecSys'25, the authors' preprocess.py): one cut-off in time; every user's
    plays before it train; the users with plays on both sides of it are divided by the stable hash
    (`split_of`) into validation and test users, half each (`VALIDATION_USER_PERCENT`), and each
    one's target is their last play, scored from every play before it, the ones after the cut-off
    included (its own time the cut-off). As under leave-one-out, one target a user: no pairs.
    Validation users train like every user, so no user is held out of training, and no test
    user's target chooses a model."""
    numbered = with_user_position(roles).withColumn("_first", F.min(S.TS).over(Window.partitionBy(S.USER_ID)))
    cut = ts_literal(cutoff_ts)
    is_last = F.col(USER_POSITION) == F.col("_plays") - 1
    last = numbered.where(is_last & (F.col(S.TS) >= cut) & (F.col("_first") < cut)).drop("_plays", "_first")
    before_last = numbered.where(~is_last).drop("_plays", "_first")
    validating = split_of(F.col(S.USER_ID), VALIDATION_USER_PERCENT) == F.lit(S.VALIDATION)
    return Periods(
        training=history(roles, cutoff_ts),
        training_cutoff=cutoff_ts,
        test_history=before_last,
        test_targets=last.where(~validating),
        test_cutoff=F.col(S.TS),
        validation_history=before_last,
        validation_targets=last.where(validating),
        validation_cutoff=F.col(S.TS),
        validation_percent=0,
    )


def leave_one_out(roles: DataFrame) -> Periods:
    """Each user's last play (in (ts, event_id) order) is the test target, the one before it the
    validation target, the plays before that train and are the validation history; the test
    history is every play before the test target. Users with fewer than 3 plays are left out.
    A play at the same time as a target but before it in event order is history (MovieLens rates
    many films in one second)."""
    user = Window.partitionBy(S.USER_ID)
    position = F.col(USER_POSITION)
    numbered = (
        with_user_position(roles)
        .where(F.col("_plays") >= LEAVE_ONE_OUT_MIN_PLAYS)
        .withColumn(TEST_CUTOFF, F.max(F.when(position == F.col("_plays") - 1, F.col(S.TS))).over(user))
        .withColumn(VALIDATION_CUTOFF, F.max(F.when(position == F.col("_plays") - 2, F.col(S.TS))).over(user))
    )
    last = F.col("_plays") - 1
    return Periods(
        training=numbered.where(position < last - 1).drop("_plays"),
        training_cutoff=F.col(VALIDATION_CUTOFF),
        test_history=numbered.where(position < last).drop("_plays"),
        test_targets=numbered.where(position == last).drop("_plays"),
        test_cutoff=F.col(TEST_CUTOFF),
        validation_history=None,
        validation_targets=numbered.where(position == last - 1).drop("_plays"),
        validation_cutoff=F.col(VALIDATION_CUTOFF),
        validation_percent=0,
    )
