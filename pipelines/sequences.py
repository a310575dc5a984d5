"""gold/sequences: one training or validation row per user, as aligned integer arrays."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from pipelines import schemas as S
from pipelines.split import IS_POSITIVE, USER_POSITION, split_of
from pipelines.vocabulary import with_station_index, with_track_index

NEGATIVE_IDX = "_negative_idx"


def feedback_id(feedback: Column) -> Column:
    """The integer code of a feedback type (schemas.FEEDBACK_IDS)."""
    codes = F.create_map(*[F.lit(x) for k, v in S.FEEDBACK_IDS.items() for x in (k, v)])
    return codes[feedback].cast("int")


def sequences(
    annotated: DataFrame,
    tracks: DataFrame,
    stations: DataFrame,
    *,
    cutoff_ts: dt.datetime,
    max_length: int,
    validation_percent: int,
) -> DataFrame:
    """One row per user with a positive before the cut-off (grain: user_id).

    Needs hard_negatives.with_hard_negative() rows. The row holds the user's last `max_length`
    plays up to and including the last positive, oldest first: track, station and feedback ids,
    whether each position is a target, and its hard negative's track id (0 = none) and tier.
    """
    last_positive = F.max(F.when(F.col(IS_POSITIVE), F.col(USER_POSITION))).over(
        Window.partitionBy(S.USER_ID)
    )
    kept = (
        annotated.withColumn("_last", last_positive)
        .where(
            (F.col(USER_POSITION) <= F.col("_last")) & (F.col(USER_POSITION) > F.col("_last") - max_length)
        )
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
    rows = kept.groupBy(S.USER_ID).agg(
        F.array_sort(F.collect_list(item)).alias("_items"),
        F.min(S.TS).alias(S.FIRST_TS),
        F.max(S.TS).alias(S.LAST_TS),
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
        F.lit(cutoff_ts).alias(S.CUTOFF_TS),
    )
