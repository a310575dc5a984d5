"""gold/eval_pairs and gold/eval_next (the test period), and the same two tables for the validation
period (gold/validation_pairs, gold/validation_next): what models are scored and chosen on."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from downbeat.pipelines import schemas as S
from downbeat.pipelines.sequences import feedback_id
from downbeat.pipelines.split import IS_NEGATIVE, IS_POSITIVE, SEEN_EXCLUDED, USER_POSITION, Cut, cut_column
from downbeat.pipelines.vocabulary import with_station_index, with_track_index


def eval_pairs(
    test: DataFrame,
    tracks: DataFrame,
    stations: DataFrame,
    *,
    cutoff: Cut,
    max_pairs_per_user: int,
) -> DataFrame:
    """One row per (positive event, negative event) pair in the target period (grain: user_id,
    up_event_id, down_event_id).

    Needs split.with_roles() rows of the target period. Up = a positive, down = a negative, same
    user, same station (null matches null: sources without stations pair any two), different
    tracks. Pairs are of events, as in UMAP'24: a track pair played twice counts twice, so a
    user's pairs weigh what the user did, not how many distinct popular tracks they met. At most
    `max_pairs_per_user` per user, chosen by a hash of the two event ids, so the choice is stable.
    `cutoff`: the start of the target period (a time, or a column of `test`'s rows).
    """
    ups = test.where(F.col(IS_POSITIVE)).select(
        F.col(S.USER_ID),
        F.col(S.STATION_ID),
        F.col(S.TRACK_ID).alias(S.UP_TRACK_ID),
        F.col(S.TS).alias(S.UP_TS),
        F.col(S.EVENT_ID).alias(S.UP_EVENT_ID),
        cut_column(cutoff).alias(S.CUTOFF_TS),
    )
    downs = test.where(F.col(IS_NEGATIVE)).select(
        F.col(S.USER_ID).alias("_user"),
        F.col(S.STATION_ID).alias("_station"),
        F.col(S.TRACK_ID).alias(S.DOWN_TRACK_ID),
        F.col(S.TS).alias(S.DOWN_TS),
        F.col(S.EVENT_ID).alias(S.DOWN_EVENT_ID),
    )
    pairs = ups.join(
        downs,
        (F.col(S.USER_ID) == F.col("_user"))
        & F.col(S.STATION_ID).eqNullSafe(F.col("_station"))
        & (F.col(S.UP_TRACK_ID) != F.col(S.DOWN_TRACK_ID)),
    )
    rank = F.row_number().over(
        Window.partitionBy(S.USER_ID).orderBy(
            F.sha2(F.concat_ws("\u001f", F.col(S.UP_EVENT_ID), F.col(S.DOWN_EVENT_ID)), 256),
            S.UP_EVENT_ID,
            S.DOWN_EVENT_ID,
        )
    )
    capped = pairs.withColumn("_rank", rank).where(F.col("_rank") <= max_pairs_per_user)
    return (
        capped.transform(lambda df: with_track_index(df, tracks, column=S.UP_TRACK_ID, as_=S.UP_TRACK_IDX))
        .transform(lambda df: with_track_index(df, tracks, column=S.DOWN_TRACK_ID, as_=S.DOWN_TRACK_IDX))
        .transform(lambda df: with_station_index(df, stations))
        .select(*S.EVAL_PAIRS.fieldNames())
    )


def eval_next(
    history: DataFrame,
    test: DataFrame,
    tracks: DataFrame,
    stations: DataFrame,
    *,
    cutoff: Cut,
    max_length: int,
) -> DataFrame:
    """One row per user with a target-period play (grain: user_id): the first such play, its feedback
    type and role (positive, negative: split.with_roles()), the user's last `max_length` plays
    before the cut-off (any feedback) as id arrays, and the tracks of every such play marked
    SEEN_EXCLUDED (`exclude_track_ids`, ascending: the rankings leave them out). `history` needs
    split.history() columns; `cutoff` is a time or a column of `test`'s rows."""
    by_user = Window.partitionBy(S.USER_ID).orderBy(S.TS, S.EVENT_ID)
    first = (
        test.withColumn("_n", F.row_number().over(by_user))
        .where(F.col("_n") == 1)
        .withColumn("_cutoff", cut_column(cutoff))
        .transform(lambda df: with_track_index(df, tracks, column=S.TRACK_ID, as_=S.TRACK_IDX))
        .transform(lambda df: with_station_index(df, stations))
    )
    count = F.count(F.lit(1)).over(Window.partitionBy(S.USER_ID))
    indexed = (
        history.withColumn("_count", count)
        .transform(lambda df: with_track_index(df, tracks, column=S.TRACK_ID, as_="_track"))
        .transform(lambda df: with_station_index(df, stations))
    )
    item = F.struct(
        F.col(USER_POSITION).alias("p"),
        F.col("_track").alias("track"),
        F.col(S.STATION_IDX).alias("station"),
        feedback_id(F.col(S.FEEDBACK)).alias("feedback"),
    )
    recent = F.col(USER_POSITION) >= F.col("_count") - max_length
    histories = indexed.groupBy(F.col(S.USER_ID).alias("_user")).agg(
        F.array_sort(F.collect_list(F.when(recent, item))).alias("_items"),  # collect_list skips nulls
        F.array_sort(F.collect_set(F.when(F.col(SEEN_EXCLUDED), F.col("_track")))).alias("_seen"),
        F.max("_count").alias("_count"),
    )
    items = F.coalesce(F.col("_items"), F.array().cast(T.ArrayType(S.HISTORY_ITEM)))
    return first.join(histories, F.col(S.USER_ID) == F.col("_user"), "left").select(
        F.col(S.USER_ID),
        F.col(S.TS),
        F.col(S.TRACK_ID),
        F.col(S.STATION_ID),
        F.col(S.FEEDBACK),
        F.col(S.TRACK_IDX),
        F.col(S.STATION_IDX),
        feedback_id(F.col(S.FEEDBACK)).alias(S.FEEDBACK_ID),
        F.col(IS_POSITIVE).alias(S.IS_POSITIVE),
        F.col(IS_NEGATIVE).alias(S.IS_NEGATIVE),
        F.coalesce(F.col("_count"), F.lit(0)).cast("int").alias(S.HISTORY_LENGTH),
        F.transform(items, lambda x: x["track"]).alias(S.HISTORY_TRACK_IDS),
        F.transform(items, lambda x: x["station"]).alias(S.HISTORY_STATION_IDS),
        F.transform(items, lambda x: x["feedback"]).alias(S.HISTORY_FEEDBACK_IDS),
        F.coalesce(F.col("_seen"), F.array().cast(T.ArrayType(T.IntegerType()))).alias(S.EXCLUDE_TRACK_IDS),
        F.col("_cutoff").alias(S.CUTOFF_TS),
    )
