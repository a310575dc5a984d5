"""gold/stats: the dataset summary the papers report in their Table 1, one row per metric."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from downbeat.pipelines import schemas as S

DAY_SECONDS = 86_400.0


def stats(plays: DataFrame, sequences: DataFrame, tracks: DataFrame, stations: DataFrame) -> DataFrame:
    """Rows (metric, value) from silver/plays, gold/sequences, gold/tracks and gold/stations rows.

    Shares of up, skip, down and play among all plays and the up : skip : down ratio (per up);
    sequence count and length (max, median); lookback in days from a sequence's first to last
    play (max, median); users, tracks, stations; the share of users with skips but no ups,
    whom only a model that reads skips can serve; and sessions: how many, their plays (mean,
    median, max) and the share with at least 5 plays (RecSys'24 keeps those).
    """
    feedback = F.col(S.FEEDBACK)

    def share(kind: str) -> Column:
        return F.avg((feedback == kind).cast("double"))

    def count_of(kind: str) -> Column:
        return F.sum((feedback == kind).cast("double"))

    per_user = plays.groupBy(S.USER_ID).agg(
        F.max((feedback == S.UP).cast("int")).alias("_up"),
        F.max((feedback == S.SKIP).cast("int")).alias("_skip"),
    )
    users = per_user.agg(
        F.count(F.lit(1)).alias("users"),
        F.avg(((F.col("_skip") == 1) & (F.col("_up") == 0)).cast("double")).alias("share_users_skip_no_up"),
    )
    events = plays.agg(
        F.count(F.lit(1)).alias("plays"),
        share(S.UP).alias("share_up"),
        share(S.SKIP).alias("share_skip"),
        share(S.DOWN).alias("share_down"),
        share(S.PLAY).alias("share_play"),
        F.try_divide(count_of(S.SKIP), count_of(S.UP)).alias("skips_per_up"),
        F.try_divide(count_of(S.DOWN), count_of(S.UP)).alias("downs_per_up"),
        F.min(S.TS).alias("_first"),
        F.max(S.TS).alias("_last"),
    )
    lookback = (F.unix_seconds(F.col(S.LAST_TS)) - F.unix_seconds(F.col(S.FIRST_TS))) / DAY_SECONDS
    rows = sequences.agg(
        F.count(F.lit(1)).alias("sequences"),
        F.sum((F.col(S.SPLIT) == S.TRAIN).cast("int")).alias("sequences_train"),
        F.sum((F.col(S.SPLIT) == S.VALIDATION).cast("int")).alias("sequences_validation"),
        F.max(S.LENGTH).alias("sequence_length_max"),
        F.median(S.LENGTH).alias("sequence_length_median"),
        F.max(lookback).alias("lookback_days_max"),
        F.median(lookback).alias("lookback_days_median"),
    )
    vocabularies = tracks.agg(F.count(F.lit(1)).alias("tracks")).crossJoin(
        stations.agg(F.count(F.lit(1)).alias("stations"))
    )
    summary = events.crossJoin(vocabularies).crossJoin(users).crossJoin(rows).crossJoin(sessions(plays))
    span = (F.unix_seconds(F.col("_last")) - F.unix_seconds(F.col("_first"))) / DAY_SECONDS
    metrics = [c for c in summary.columns if not c.startswith("_")]
    pairs = [F.struct(F.lit(m).alias(S.METRIC), F.col(m).cast("double").alias(S.VALUE)) for m in metrics]
    pairs.append(F.struct(F.lit("days").alias(S.METRIC), span.cast("double").alias(S.VALUE)))
    return summary.select(F.explode(F.array(*pairs)).alias("_m")).select(
        F.col("_m")[S.METRIC].alias(S.METRIC), F.col("_m")[S.VALUE].alias(S.VALUE)
    )


def sessions(plays: DataFrame) -> DataFrame:
    """One row: how many sessions, their plays (mean, median, max) and the share with at least 5
    (RecSys'24 keeps those; the synthetic profiles are shaped on them)."""
    per_session = plays.groupBy(S.USER_ID, S.SESSION_ID).agg(F.count(F.lit(1)).alias("_plays"))
    return per_session.agg(
        F.count(F.lit(1)).alias("sessions"),
        F.avg("_plays").alias("session_length_mean"),
        F.median("_plays").alias("session_length_median"),
        F.max("_plays").alias("session_length_max"),
        F.avg((F.col("_plays") >= 5).cast("double")).alias("share_sessions_5_plays"),
    )
